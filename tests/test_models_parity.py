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

FIXTURES = Path(__file__).parent / "fixtures" / "sd"
VARIANTS = ("sd1", "sd2_v", "inpaint")
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
@pytest.mark.parametrize("case", ["even", "odd"])
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


@pytest.mark.slow
def test_full_size_sd15_unet_matches_diffusers():
    """The real SD 1.5 UNet configuration (random weights), one forward at 32x32, batch 2.

    Needs the output of `make_reference.py --full-size DIR` (about 3.4 GB) and
    PADDIFF_FULLSIZE_DIR=DIR.
    """
    folder = os.environ.get("PADDIFF_FULLSIZE_DIR")
    if not folder:
        pytest.skip(
            "set PADDIFF_FULLSIZE_DIR to the folder written by "
            "`tests/fixtures/sd/make_reference.py --full-size DIR`"
        )
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    ref = np.load(Path(folder) / "reference.npz")
    unet = UNet2DConditionModel.from_pretrained(Path(folder) / "unet")
    start = time.perf_counter()
    out = unet(ref["latents"], ref["timesteps"], ref["context"])
    seconds = time.perf_counter() - start
    error = float(np.abs(out - ref["output"]).max())
    print(f"full-size SD 1.5 UNet: max abs error {error:.3g}, forward {seconds:.1f} s")
    assert error <= TOLERANCE
