"""paddiff.safety: building the operator's filters and running them as the pipeline will."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paddiff.interfaces import SafetyFilter, Verdict
from paddiff.registry import Registry
from paddiff.safety import SafetyBlocked, load_filters
from PIL import Image

MODEL_DIR = Path(__file__).parents[1] / "fixtures" / "safety" / "tiny_checker"


def test_default_config_without_model_says_image_checking_is_off():
    filters = load_filters()
    assert [f.name for f in filters.prompt_filters] == ["PromptTermFilter"]
    assert not filters.image_checking
    status = filters.status()
    assert "prompt checking: PromptTermFilter" in status
    assert "image checking: OFF" in status
    assert "image checking is OFF: no checker weights were configured" in status


def test_blocked_prompt_names_the_category_not_the_term():
    filters = load_filters({"filters": [{"name": "PromptTermFilter"}]})
    with pytest.raises(SafetyBlocked) as caught:
        filters.check_prompt("a b e h e a d i n g scene")
    error = caught.value
    assert str(error) == "the prompt was refused by the safety filter (category: violence)"
    assert error.category == "violence" and error.field == "prompt"
    assert error.verdict.matched == "beheading"  # for the operator's logs
    assert "behead" not in str(error)


def test_negative_prompt_is_checked_too():
    filters = load_filters({"filters": [{"name": "PromptTermFilter"}]})
    assert len(filters.check_prompt("a quiet lake", "blurry")) == 2
    with pytest.raises(SafetyBlocked, match="negative prompt was refused.*sexual") as caught:
        filters.check_prompt("a quiet lake", "p0rn")
    assert caught.value.field == "negative_prompt"


def test_operator_may_leave_negative_prompts_unchecked():
    config = {"check_negative_prompt": False, "filters": [{"name": "PromptTermFilter"}]}
    filters = load_filters(config)
    assert len(filters.check_prompt("a quiet lake", "nsfw, nude, blurry")) == 1
    assert "negative prompts are not checked" in filters.status()
    with pytest.raises(SafetyBlocked):
        filters.check_prompt("nude", "blurry")


def test_a_config_without_filters_keeps_the_default_filters():
    # {"check_negative_prompt": false} alone used to switch every filter off
    filters = load_filters({"check_negative_prompt": False})
    assert [type(f).__name__ for f in filters.prompt_filters] == ["PromptTermFilter"]
    assert len(filters.check_prompt("a quiet lake", "nsfw, nude")) == 1
    assert not load_filters({"filters": []}).prompt_filters  # how to ask for none


def test_disabled_by_configuration_runs_nothing():
    filters = load_filters({"enabled": False, "filters": [{"name": "PromptTermFilter"}]})
    assert filters.check_prompt("porn") == []
    assert "disabled in the server configuration" in filters.status()


def test_config_from_a_json_file_and_bad_configs(tmp_path):
    path = tmp_path / "safety.json"
    path.write_text(json.dumps({"filters": [{"name": "PromptTermFilter"}]}), encoding="utf-8")
    assert load_filters(path).prompt_filters
    with pytest.raises(ValueError, match="unknown key"):
        load_filters({"filter": []})
    with pytest.raises(ValueError, match="has no 'name'"):
        load_filters({"filters": [{"term_files": []}]})
    with pytest.raises(ValueError, match="cannot read the safety config"):
        load_filters(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="'enabled' must be true or false, got 'no'"):
        load_filters({"enabled": "no"})  # a string would have been truthy: filtering on
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        load_filters([{"name": "PromptTermFilter"}])
    with pytest.raises(ValueError, match="'filters' must be a list of objects"):
        load_filters({"filters": "PromptTermFilter"})


def test_explicit_checker_weights_that_are_missing_are_an_error(tmp_path):
    pytest.importorskip("paddle")
    from paddiff.plugins.safety.image_checker import CheckerWeightsError

    config = {"filters": [{"name": "StableDiffusionSafetyChecker", "weights": str(tmp_path)}]}
    with pytest.raises(CheckerWeightsError, match="image checking is off"):
        load_filters(config)


def test_model_folder_checker_is_found_and_replaces_flagged_images():
    pytest.importorskip("paddle")
    filters = load_filters(model_dir=MODEL_DIR)
    assert [f.name for f in filters.image_filters] == ["StableDiffusionSafetyChecker"]
    assert "image checking: StableDiffusionSafetyChecker" in filters.status()
    images = [Image.open(MODEL_DIR.parent / "images" / n) for n in ("red.png", "split.png")]
    out, verdicts = filters.filter_images(images)
    assert [v.allowed for v in verdicts] == [False, True]  # see reference.json
    assert not np.asarray(out[0]).any() and out[1] is images[1]


class FlagsEverything(SafetyFilter):
    """A third-party image filter with only the interface's methods."""

    @classmethod
    def from_config(cls, config):
        return cls()

    def check_prompt(self, text):
        return Verdict(allowed=True)

    def check_images(self, images):
        return [Verdict(allowed=False, category="test", filter="FlagsEverything") for _ in images]


def test_filters_without_filter_images_are_blacked_out_by_the_caller(tmp_path):
    registry = Registry(paths=[str(tmp_path)])
    registry.register("safety_filters", "FlagsEverything", FlagsEverything)
    filters = load_filters({"filters": [{"name": "FlagsEverything"}]}, registry=registry)
    arrays = np.zeros((2, 3, 8, 8), np.float32)
    out, verdicts = filters.filter_images(arrays)
    assert (out == -1).all() and (arrays == 0).all()
    assert [v.category for v in verdicts] == ["test", "test"]
    images, _ = filters.filter_images([Image.new("RGB", (4, 4), "white")])
    assert not np.asarray(images[0]).any()


def test_prompt_filtering_does_not_import_paddle():
    code = (
        "import sys; from paddiff.safety import load_filters;"
        "f = load_filters({'filters': [{'name': 'PromptTermFilter'}]}); f.check_prompt('a cat');"
        "assert 'paddle' not in sys.modules, 'paddle imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
