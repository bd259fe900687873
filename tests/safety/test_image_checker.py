"""StableDiffusionSafetyChecker against diffusers' (fixture: tests/fixtures/safety/make_reference.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import paddiff
import pytest
from PIL import Image

paddle = pytest.importorskip("paddle")

from paddiff.plugins.safety.clip_preprocess import ClipImageSettings, preprocess  # noqa: E402
from paddiff.plugins.safety.image_checker import (  # noqa: E402
    CheckerWeightsError,
    StableDiffusionSafetyChecker,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "safety"
CHECKER = FIXTURES / "tiny_checker" / "safety_checker"
REFERENCE = np.load(FIXTURES / "reference.npz")
META = json.loads((FIXTURES / "reference.json").read_text(encoding="utf-8"))
NAMES = [Path(r["file"]).stem for r in META["images"]]


def load_images() -> list[Image.Image]:
    return [Image.open(FIXTURES / r["file"]) for r in META["images"]]


@pytest.fixture(scope="module")
def checker() -> StableDiffusionSafetyChecker:
    return paddiff.get("safety_filters", "StableDiffusionSafetyChecker").from_config(
        {"weights": str(CHECKER)}
    )


def test_preprocessing_matches_the_clip_image_processor(checker):
    assert checker.settings.shortest_edge == 64  # read from the sibling feature_extractor/
    pixels = preprocess(load_images(), checker.settings)
    np.testing.assert_allclose(pixels, REFERENCE["pixel_values"], atol=1e-6)


def test_preprocessing_with_stable_diffusions_settings():
    images = [Image.open(FIXTURES / "images" / n) for n in ("checker.png", "h_gradient.png")]
    expected = np.load(FIXTURES / "processor_224.npz")["pixel_values"]
    np.testing.assert_allclose(preprocess(images, ClipImageSettings()), expected, atol=1e-6)


def test_scores_match_diffusers(checker):
    results = checker.scores(load_images())
    special_thresholds = checker.network.special_care_embeds_weights.numpy()
    concept_thresholds = checker.network.concept_embeds_weights.numpy()
    for i, (result, record) in enumerate(zip(results, META["images"], strict=True)):
        adjust = 0.01 if record["special_care"] else 0.0
        special = REFERENCE["special_cos_dist"][i] - special_thresholds
        concept = REFERENCE["cos_dist"][i] - concept_thresholds
        assert bool(result["special_care"]) == record["special_care"], NAMES[i]
        # Only special-care embedding 0 can fire in the fixture; the 0.01 applies after it.
        special_adjust = np.array([0.0] + [adjust] * (len(special) - 1))
        np.testing.assert_allclose(result["special_scores"], special + special_adjust, atol=1e-4)
        np.testing.assert_allclose(result["concept_scores"], concept + adjust, atol=1e-4)


def test_verdicts_match_diffusers(checker):
    verdicts = checker.check_images(load_images())
    assert [not v.allowed for v in verdicts] == [r["has_nsfw_concept"] for r in META["images"]]
    flagged = next(v for v in verdicts if not v.allowed)
    assert flagged.category == "nsfw" and "nsfw" in flagged.reason
    assert flagged.filter == "StableDiffusionSafetyChecker"


def test_special_care_adjustment_decides_an_image(checker):
    """The fixture has one image whose concept score is just below zero without the 0.01."""
    index = NAMES.index(META["adjustment_only_image"])
    result = checker.scores(load_images())[index]
    assert result["special_care"] and result["bad_concepts"]
    assert all(
        -0.01 < s - 0.01 <= 0 for s in np.array(result["concept_scores"])[result["bad_concepts"]]
    )


def test_flagged_images_are_replaced_with_black(checker):
    images = load_images()
    filtered, verdicts = checker.filter_images(images)
    for original, image, verdict in zip(images, filtered, verdicts, strict=True):
        if verdict.allowed:
            assert image is original
        else:
            assert image.size == original.size and not np.asarray(image).any()


def test_arrays_in_minus_one_to_one_are_checked_and_blacked_out(checker):
    images = load_images()[:4]
    arrays = np.stack(
        [
            np.asarray(im.convert("RGB").resize((64, 64)), np.float32).transpose(2, 0, 1)
            for im in images
        ]
    )
    arrays = arrays / 127.5 - 1
    filtered, verdicts = checker.filter_images(arrays)
    assert filtered.shape == arrays.shape
    for array, verdict, original in zip(filtered, verdicts, arrays, strict=True):
        np.testing.assert_array_equal(array, original if verdict.allowed else -np.ones_like(array))
    assert not all(v.allowed for v in verdicts)  # red, white and black are flagged


def test_replacement_none_only_reports(checker):
    lenient = StableDiffusionSafetyChecker(checker.network, checker.settings, replacement="none")
    images = load_images()
    filtered, verdicts = lenient.filter_images(images)
    assert filtered is images and not all(v.allowed for v in verdicts)


def test_prompts_are_allowed(checker):
    assert checker.check_prompt("anything").allowed


def test_missing_weights_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckerWeightsError, match="does not exist.*image checking is off"):
        StableDiffusionSafetyChecker.from_config({"weights": str(tmp_path / "nowhere")})
    with pytest.raises(CheckerWeightsError, match="needs 'weights'"):
        StableDiffusionSafetyChecker.from_config({})
    empty = tmp_path / "safety_checker"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(CheckerWeightsError, match=r"found \['config.json'\]"):
        StableDiffusionSafetyChecker.from_config({"weights": str(empty)})


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    from paddiff.weights import save_state_dict
    from safetensors.numpy import load_file

    folder = tmp_path / "safety_checker"
    shutil.copytree(CHECKER, folder)
    state = load_file(str(CHECKER / "model.safetensors"))
    state.pop("visual_projection.weight")
    state["extra.weight"] = np.zeros(3, np.float32)
    save_state_dict(state, folder / "model.safetensors")
    with pytest.raises(
        ValueError, match=r"missing \['visual_projection.weight'\].*\['extra.weight'\]"
    ):
        StableDiffusionSafetyChecker.from_config({"weights": str(folder)})


def test_nested_checkpoint_keys_load_too(tmp_path, checker):
    """SD's published checkpoints nest the tower (vision_model.vision_model.*) and carry
    position_ids; transformers 5 saves it flat. Both load to the same network."""
    from paddiff.weights import save_state_dict
    from safetensors.numpy import load_file

    folder = tmp_path / "sd" / "safety_checker"
    shutil.copytree(CHECKER, folder)
    state = load_file(str(CHECKER / "model.safetensors"))
    nested = {
        ("vision_model." + k if k.startswith("vision_model.") else k): v for k, v in state.items()
    }
    nested["vision_model.vision_model.embeddings.position_ids"] = np.arange(17)[None]
    save_state_dict(nested, folder / "model.safetensors")
    other = StableDiffusionSafetyChecker.from_config(
        {
            "weights": str(folder),
            "feature_extractor": str(FIXTURES / "tiny_checker" / "feature_extractor"),
        }
    )
    images = load_images()
    assert other.scores(images) == checker.scores(images)


def test_legacy_vision_config_dict_takes_precedence(tmp_path, checker):
    folder = tmp_path / "safety_checker"
    shutil.copytree(CHECKER, folder)
    config = json.loads((CHECKER / "config.json").read_text(encoding="utf-8"))
    tiny = config["vision_config"]
    config["vision_config"] = {"hidden_size": 1024, "num_hidden_layers": 24}  # stale values
    config["vision_config_dict"] = tiny
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    other = StableDiffusionSafetyChecker.from_config({"weights": str(folder)})
    assert other.scores(load_images()[:2]) == checker.scores(load_images()[:2])
