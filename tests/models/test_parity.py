"""Paddle UNet, VAE and CLIP text encoder against diffusers / transformers outputs.

The fixtures (tests/fixtures/sd/{sd1,sd2_v,inpaint}) are tiny random-weight models in diffusers
layout with reference outputs, written by tests/fixtures/sd/make_reference.py. Components are
looked up in the registry by the class names that the folders' model_index.json gives.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.randomness import Generator
from paddiff.registry import check_conformance

from support.fixture_configs import SD_VARIANTS, UNET_CASES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sd"
VARIANTS = SD_VARIANTS
KIND_OF = {"unet": "denoisers", "vae": "vaes", "text_encoder": "text_encoders"}
TOLERANCE = 1e-4  # max abs error, fp32

_loaded: dict = {}


def load(variant: str, component: str):
    """The component of a fixture folder, loaded once per test session."""
    key = (variant, component)
    if key not in _loaded:
        folder = FIXTURES / variant
        index = json.loads((folder / "model_index.json").read_text())
        cls = paddiff.get(KIND_OF[component], index[component][1])
        _loaded[key] = cls.from_pretrained(folder / component)
    return _loaded[key]


def reference(variant: str):
    return np.load(FIXTURES / variant / "reference.npz")


def assert_close(actual, expected):
    assert actual.shape == expected.shape
    error = float(np.abs(actual - expected).max())
    assert error <= TOLERANCE, f"max abs error {error:.3g} > {TOLERANCE}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", list(UNET_CASES))
def test_unet_matches_diffusers(variant, case):
    unet, ref = load(variant, "unet"), reference(variant)
    out = unet(
        ref[f"unet_{case}_latents"], ref[f"unet_{case}_timesteps"], ref[f"unet_{case}_context"]
    )
    assert_close(out, ref[f"unet_{case}_output"])


def test_unet_accepts_a_scalar_timestep():
    unet, ref = load("sd1", "unet"), reference("sd1")
    latents, context = ref["unet_odd_latents"], ref["unet_odd_context"]  # both timesteps 500
    assert_close(unet(latents, 500, context), ref["unet_odd_output"])


@pytest.mark.parametrize(
    "variant, in_channels, prediction_type",
    [("sd1", 4, "epsilon"), ("sd2_v", 4, "v_prediction"), ("inpaint", 9, "epsilon")],
)
def test_unet_declares_channels_and_prediction_type(variant, in_channels, prediction_type):
    unet = load(variant, "unet")
    assert (unet.in_channels, unet.out_channels) == (in_channels, 4)
    assert unet.prediction_type == prediction_type  # read from the sibling scheduler config


@pytest.mark.parametrize("variant", ["sd1", "sd2_v"])
def test_vae_posterior_and_decode_match_diffusers(variant):
    vae, ref = load(variant, "vae"), reference(variant)
    mean, logvar = vae.posterior(ref["vae_images"])
    assert_close(mean, ref["vae_mean"])
    assert_close(logvar, ref["vae_logvar"])
    assert_close(vae.decode(ref["vae_latents"]), ref["vae_decoded"])


def test_vae_encode_is_the_mode_or_a_seeded_posterior_sample():
    vae, ref = load("sd1", "vae"), reference("sd1")
    images = ref["vae_images"]
    assert_close(vae.encode(images), ref["vae_mean"])
    sample = vae.encode(images, generator=Generator(3))
    noise = Generator(3).randn(ref["vae_mean"].shape)
    assert_close(sample, ref["vae_mean"] + np.exp(0.5 * ref["vae_logvar"]) * noise)
    assert np.array_equal(sample, vae.encode(images, generator=Generator(3)))


def test_vae_declares_scaling_and_downsampling():
    vae = load("sd1", "vae")
    assert vae.scaling_factor == pytest.approx(0.18215)
    assert (vae.downsample_factor, vae.latent_channels) == (2, 4)  # two levels in the fixture


@pytest.mark.parametrize("variant", VARIANTS)
def test_text_encoder_matches_diffusers_encode_prompt(variant):
    encoder, ref = load(variant, "text_encoder"), reference(variant)
    prompts = json.loads((FIXTURES / "prompts.json").read_text(encoding="utf-8"))
    assert np.array_equal(encoder.tokenize(prompts), ref["token_ids"])
    assert_close(encoder.encode(prompts), ref["text_hidden_states"])
    assert (encoder.max_length, encoder.hidden_size) == (77, 32)


def test_text_encoder_clip_skip_matches_diffusers_definition():
    from paddiff.plugins.text_encoders.clip import CLIPTextModel

    ref = reference("sd1")
    prompts = json.loads((FIXTURES / "prompts.json").read_text(encoding="utf-8"))
    encoder = CLIPTextModel.from_pretrained(FIXTURES / "sd1" / "text_encoder", clip_skip=1)
    assert_close(encoder.encode(prompts), ref["text_hidden_states_clip_skip_1"])


def test_unet_rejects_mismatched_inputs_clearly():
    unet, ref = load("sd1", "unet"), reference("sd1")
    latents, context = ref["unet_even_latents"], ref["unet_even_context"]
    with pytest.raises(ValueError, match="9 channels.*expects 4"):
        unet(np.zeros((2, 9, 8, 8), np.float32), 1.0, context)
    with pytest.raises(ValueError, match="conditioning batch 1 .* latents batch 2"):
        unet(latents, 1.0, context[:1])
    with pytest.raises(ValueError, match="3 timesteps for a batch of 2"):
        unet(latents, np.ones(3, np.float32), context)


@pytest.mark.parametrize("component", sorted(KIND_OF))
def test_plugins_conform_to_their_interfaces(component):
    cls = type(load("sd1", component))
    assert check_conformance(KIND_OF[component], cls) == []


@pytest.fixture(scope="module")
def fullsize() -> Path:
    """The folder written by `make_reference.py --full-size DIR` (about 4 GB), from
    PADDIFF_FULLSIZE_DIR: SD 1.5's UNet, VAE and text encoder with random weights, and the full
    49,408-token CLIP vocabulary."""
    folder = os.environ.get("PADDIFF_FULLSIZE_DIR")
    if not folder:
        pytest.skip(
            "set PADDIFF_FULLSIZE_DIR to the folder written by "
            "`tests/fixtures/sd/make_reference.py --full-size DIR`"
        )
    return Path(folder)


def timed(label: str, function, *args):
    start = time.perf_counter()
    result = function(*args)
    print(f"{label}: {time.perf_counter() - start:.1f} s")
    return result


def report_error(label: str, actual, expected) -> None:
    print(f"{label}: max abs error {float(np.abs(actual - expected).max()):.3g}")
    assert_close(actual, expected)


@pytest.mark.slow
def test_full_size_sd15_unet_matches_diffusers(fullsize):
    """The real SD 1.5 UNet configuration (859.5 M parameters), 32x32 latents, batch 2."""
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    ref = np.load(fullsize / "reference.npz")
    unet = timed("load UNet", UNet2DConditionModel.from_pretrained, fullsize / "unet")
    args = (ref["unet_latents"], ref["unet_timesteps"], ref["unet_context"])
    report_error("SD 1.5 UNet", timed("UNet forward", unet, *args), ref["unet_output"])


@pytest.mark.slow
def test_full_size_sd15_vae_matches_diffusers(fullsize):
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    ref = np.load(fullsize / "reference.npz")
    vae = AutoencoderKL.from_pretrained(fullsize / "vae")
    assert vae.downsample_factor == 8
    mean, logvar = timed("VAE encode 128x128", vae.posterior, ref["vae_images"])
    report_error("SD 1.5 VAE mean", mean, ref["vae_mean"])
    report_error("SD 1.5 VAE logvar", logvar, ref["vae_logvar"])
    decoded = timed("VAE decode 32x32 latents", vae.decode, ref["vae_latents"])
    report_error("SD 1.5 VAE decode", decoded, ref["vae_decoded"])


@pytest.mark.slow
def test_full_size_sd15_text_encoder_and_full_vocabulary_match(fullsize):
    from paddiff.plugins.text_encoders.clip import CLIPTextModel

    ref = np.load(fullsize / "reference.npz")
    encoder = CLIPTextModel.from_pretrained(fullsize / "text_encoder")
    prompts = json.loads((FIXTURES / "prompts.json").read_text(encoding="utf-8"))
    assert np.array_equal(encoder.tokenize(prompts), ref["token_ids"])
    report_error("CLIP ViT-L/14 text", encoder.encode(prompts), ref["text_hidden_states"])
    cases = json.loads((fullsize / "tokenizer_cases.json").read_text(encoding="utf-8"))
    ids = encoder.tokenize(cases["prompts"])
    wrong = [
        p
        for p, row, want in zip(cases["prompts"], ids, cases["ids"], strict=True)
        if row[: len(want)].tolist() != want
    ]
    assert not wrong, f"{len(wrong)} of {len(ids)} prompts differ, e.g. {wrong[:3]!r}"
