"""SDXL's components against diffusers / transformers on the tiny SDXL-shaped fixtures
(tests/fixtures/sdxl/make_reference.py): the UNet with text-time added embeddings (base: 6
micro-conditioning numbers, refiner: 5), both text encoders' penultimate hidden states and the
second one's pooled projection, and the SDXL VAE config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
import pytest

from support.fixture_configs import SDXL_PROMPTS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"
TOLERANCE = 1e-4  # max abs error, fp32

_loaded: dict = {}


def load(kind: str, name: str, folder: str, **options):
    key = (kind, name, folder, tuple(sorted(options.items())))
    if key not in _loaded:
        _loaded[key] = paddiff.get(kind, name).from_pretrained(FIXTURES / folder, **options)
    return _loaded[key]


def reference():
    return np.load(FIXTURES / "components.npz")


def assert_close(actual, expected):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    error = float(np.abs(actual - expected).max())
    assert error <= TOLERANCE, f"max abs error {error:.3g} > {TOLERANCE}"


@pytest.mark.parametrize("model", ["base", "refiner"])
def test_unet_with_added_embeddings_matches_diffusers(model):
    unet, ref = load("denoisers", "UNet2DConditionModel", f"{model}/unet"), reference()
    added = {"text_embeds": ref[f"{model}_pooled"], "time_ids": ref[f"{model}_time_ids"]}
    out = unet(ref[f"{model}_sample"], ref[f"{model}_timesteps"], ref[f"{model}_context"], added)
    assert_close(out, ref[f"{model}_output"])


def test_unet_names_missing_or_misshaped_added_conditions():
    unet, ref = load("denoisers", "UNet2DConditionModel", "base/unet"), reference()
    args = ref["base_sample"], ref["base_timesteps"], ref["base_context"]
    with pytest.raises(ValueError, match="needs added_cond"):
        unet(*args)
    wrong = {"text_embeds": ref["base_pooled"], "time_ids": ref["refiner_time_ids"]}  # 5 numbers
    with pytest.raises(ValueError, match="projection_class_embeddings_input_dim"):
        unet(*args, wrong)


def test_first_encoder_gives_penultimate_hidden_states():
    ref = reference()
    encoder = load(
        "text_encoders", "CLIPTextModel", "base/text_encoder", hidden_states="penultimate"
    )
    ids = encoder.tokenize(SDXL_PROMPTS)
    np.testing.assert_array_equal(ids, ref["ids1"])
    assert_close(encoder.runner(np.asarray(ids, np.int64)), ref["te1_penultimate"])
    last = load("text_encoders", "CLIPTextModel", "base/text_encoder")  # SD 1.x behaviour kept
    assert_close(last.runner(np.asarray(ids, np.int64)), ref["te1_last"])


def test_second_encoder_gives_penultimate_and_pooled_projection():
    ref = reference()
    encoder = load("text_encoders", "CLIPTextModelWithProjection", "base/text_encoder_2")
    ids = encoder.tokenize(SDXL_PROMPTS)
    np.testing.assert_array_equal(ids, ref["ids2"])  # tokenizer_2 pads with "!"
    hidden, pooled = encoder.runner(np.asarray(ids, np.int64))
    assert_close(hidden, ref["te2_penultimate"])
    assert_close(pooled, ref["te2_pooled"])


def test_sdxl_vae_config_and_decode():
    vae, ref = load("vaes", "AutoencoderKL", "base/vae"), reference()
    assert vae.scaling_factor == pytest.approx(0.13025)
    assert_close(vae.decode(ref["vae_latents"]), ref["vae_decoded"])
