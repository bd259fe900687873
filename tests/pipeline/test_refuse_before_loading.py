"""A refused prompt and bad settings fail before any model loads (issue 23, item 3), as
docs/pipeline.md says: in the CLI, the Python API (`paddiff.safety.check_prompt`,
`paddiff.validation.check_settings`) and the PaddleHub module (which loads on first use)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import paddiff
import paddiff.pipeline
import pytest
from paddiff.cli import main
from paddiff.registry import Registry
from paddiff.safety import SafetyBlocked, check_prompt, load_filters
from paddiff.validation import ValidationError, check_settings

ROOT = Path(__file__).resolve().parents[2]
TERM = "zorkblat"  # an operator's own listed term


@pytest.fixture()
def safety_config(tmp_path) -> Path:
    terms = tmp_path / "terms.txt"
    terms.write_text(f"# category: house-rules\n{TERM}\n", encoding="utf-8")
    config = tmp_path / "safety.json"
    config.write_text(
        json.dumps({"filters": [{"name": "PromptTermFilter", "term_files": [str(terms)]}]})
    )
    return config


@pytest.fixture()
def no_loading(monkeypatch):
    """Any model load fails the test."""

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(paddiff.pipeline, "load_pipeline", load)
    monkeypatch.setitem(vars(paddiff), "load_pipeline", load)
    monkeypatch.setattr(importlib.import_module("paddiff.loader"), "load_components", load)


def test_cli_refuses_a_listed_term_without_loading_the_model(
    safety_config, tmp_path, capsys, no_loading
):
    args = ["generate", f"a {TERM} on a hill", "--safety-config", str(safety_config)]
    assert main([*args, "--model", "/nonexistent", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "prompt was refused by the safety filter (category: house-rules)" in err
    assert "not found" not in err and TERM not in err
    assert not (tmp_path / "out").exists()


def test_cli_checks_the_negative_prompt_and_img2img_too(
    safety_config, tmp_path, capsys, no_loading
):
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(image)
    for args in (
        ["generate", "a cat", "--negative", TERM],
        ["img2img", TERM, "-i", str(image)],
        ["inpaint", TERM, "-i", str(image), "-m", str(image)],
    ):
        code = main([*args, "--safety-config", str(safety_config), "--model", "/nonexistent"])
        assert code == 1
        assert "refused by the safety filter" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "steps must be a positive integer"),
        (["--guidance", "-1"], "guidance_scale must be a number >= 0"),
        (["--width", "33"], "width 33 is not a multiple of 8"),
        (["--width", "4096", "--height", "4096"], "above the limit"),
        (["-n", "0"], "num_images_per_prompt must be a positive integer"),
        (["--seed", "-1"], "seeds must be integers"),
        (["--eta", "-0.5"], "eta must be a number >= 0"),
        (["--scheduler", "eulerr"], "unknown scheduler 'eulerr'"),
    ],
)
def test_cli_refuses_bad_settings_without_loading_the_model(
    extra, message, tmp_path, capsys, no_loading
):
    code = main(["generate", "a cat", "--model", "/nonexistent", "-o", str(tmp_path), *extra])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and "not found" not in err


def test_cli_refuses_bad_images_and_strength_without_loading_the_model(
    tmp_path, capsys, no_loading
):
    from PIL import Image

    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.new("RGB", (16, 16)).save(small)
    Image.new("L", (32, 16)).save(large)
    model = ["--model", "/nonexistent"]
    cases = [
        (["img2img", "a cat", "-i", str(tmp_path / "typo.png")], "image file not found"),
        (["img2img", "a cat", "-i", str(small), "--strength", "1.5"], "strength must be"),
        (["img2img", "a cat", "-i", str(small), "--strength", "0.01", "--steps", "5"], "runs no"),
        (["inpaint", "a cat", "-i", str(small), "-m", str(large)], "mask_image is 32x16"),
    ]
    for args, message in cases:
        assert main([*args, *model]) == 1
        assert message in capsys.readouterr().err


def test_a_good_request_still_reaches_the_loader(tmp_path, capsys):
    assert (
        main(["generate", "a cat", "--model", str(tmp_path / "missing"), "-o", str(tmp_path)]) == 1
    )
    assert "not found" in capsys.readouterr().err


def test_cli_refusal_imports_no_paddle_in_a_fresh_process(safety_config, tmp_path):
    """What a user runs: `paddiff generate "<term>" --safety-config cfg --model /nonexistent`
    answers with the refusal, not "model not found", and never even imports Paddle."""
    code = textwrap.dedent(
        f"""
        import sys
        from paddiff.cli import main
        code = main(["generate", "{TERM}", "--safety-config", {str(safety_config)!r},
                     "--model", "/nonexistent", "-o", {str(tmp_path)!r}])
        assert "paddle" not in sys.modules, "paddle was imported"
        sys.exit(code)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "refused by the safety filter (category: house-rules)" in done.stderr
    assert "not found" not in done.stderr and "Traceback" not in done.stderr


# -- the Python API -----------------------------------------------------------------------------


def test_check_prompt_needs_no_pipeline(safety_config):
    with pytest.raises(SafetyBlocked, match="house-rules"):
        check_prompt(f"a {TERM}", config=safety_config)
    with pytest.raises(SafetyBlocked) as refused:
        check_prompt(["a cat", "a dog"], [None, TERM], config=safety_config)
    assert refused.value.field == "negative_prompt"
    assert check_prompt("a cat", "blurry", config=safety_config)
    no_negatives = json.loads(safety_config.read_text()) | {"check_negative_prompt": False}
    assert check_prompt("a cat", TERM, config=no_negatives)
    assert check_prompt(TERM, config={"enabled": False}) == []


class ExplodingImageChecker(paddiff.SafetyFilter):
    checks = ("images",)

    @classmethod
    def from_config(cls, config):
        raise AssertionError("an image checker was built for a prompt check")

    def check_prompt(self, text):
        return paddiff.Verdict(True)

    def check_images(self, images):
        return [paddiff.Verdict(True) for _ in images]


def test_prompt_only_loading_builds_no_image_checker(tmp_path):
    registry = Registry(paths=[str(tmp_path)])
    registry.register("safety_filters", "exploding", ExplodingImageChecker)
    from paddiff.plugins.safety.prompt_filter import PromptTermFilter

    registry.register("safety_filters", "PromptTermFilter", PromptTermFilter)
    config = {
        "filters": [
            {"name": "exploding"},
            {"name": "PromptTermFilter"},
            {"name": "StableDiffusionSafetyChecker", "weights": "/nonexistent"},
        ]
    }
    filters = load_filters(config, registry=registry, checks=("prompts",))
    assert [f.name for f in filters.prompt_filters] == ["PromptTermFilter"]
    assert filters.image_filters == []
    with pytest.raises(AssertionError, match="image checker was built"):
        load_filters(config, registry=registry, checks=("images",))


def test_check_settings_matches_the_pipeline_messages():
    check_settings()  # the defaults are valid
    check_settings(width=512, height=768, seed=3, num_images=2, strength=0.5, scheduler="euler-a")
    with pytest.raises(ValidationError, match="height 60 is not a multiple of 8"):
        check_settings(height=60)
    with pytest.raises(ValidationError, match="Did you mean 'euler'"):
        check_settings(scheduler="eulr")
    with pytest.raises(ValidationError, match="got 3 seeds for 2 images"):
        check_settings(seed=[1, 2, 3], num_images=2)


# -- the PaddleHub module ----------------------------------------------------------------------


@pytest.fixture()
def hub_module_class(monkeypatch):
    """The module's class, imported from hub_module/ under another name (no `hub install`)."""
    pytest.importorskip("paddlehub")
    spec = importlib.util.spec_from_file_location(
        "paddiff_hub_module_under_test", ROOT / "hub_module" / "paddiff" / "module.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Paddiff


def test_hub_module_refuses_before_loading_the_model(
    hub_module_class, safety_config, monkeypatch, no_loading
):
    monkeypatch.setenv("PADDIFF_SAFETY_CONFIG", str(safety_config))
    module = hub_module_class()  # nothing loaded yet
    with pytest.raises(SafetyBlocked, match="house-rules"):
        module.text_to_image(f"a {TERM}")
    with pytest.raises(SafetyBlocked):
        module.text_to_image("a cat", negative_prompt=TERM)
    with pytest.raises(ValidationError, match="steps must be"):
        module.text_to_image("a cat", steps=0)
    with pytest.raises(ValidationError, match="strength must be"):
        module.image_to_image("a cat", ROOT / "docs" / "embedded-model-grid.png", strength=3)
    with pytest.raises(ValueError, match="refused by the safety filter"):
        module.serve(prompt=TERM)
    with pytest.raises(AssertionError, match="the model was loaded"):
        module.text_to_image("a cat", steps=2)  # a good request goes on to load the model


def test_hub_module_names_a_missing_model_at_once(hub_module_class):
    with pytest.raises(FileNotFoundError, match="model not found: /nonexistent"):
        hub_module_class(model="/nonexistent")
