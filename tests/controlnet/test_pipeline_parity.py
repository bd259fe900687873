"""Whole control-net pipelines against diffusers' StableDiffusionControlNet(Img2Img|Inpaint)
Pipeline on the tiny sd1 model and fixture control nets (tests/fixtures/controlnet): the same
noise gives the same images within 2/255."""

from __future__ import annotations

import numpy as np
import pytest

from support.control_cases import CASES, MODELS, TOLERANCE, difference, generate, reference
from support.pipeline_fixtures import fixture_pipeline


@pytest.fixture(scope="module")
def pipe():
    return fixture_pipeline("sd1", scheduler="DDIMScheduler")


@pytest.mark.parametrize("case", CASES)
def test_matches_diffusers(pipe, case):
    ref = reference(case)
    result = generate(pipe, ref)
    assert difference(result.images, ref["expected"]) <= TOLERANCE
    nets = [str(n) for n in ref["nets"]]
    for i, name in enumerate(nets):  # recorded as A1111's ControlNet extension does
        assert f"Model: {name} [" in result.settings[0][f"controlnet_{i}"]


def test_the_control_changes_the_image(pipe):
    """The parity above means something: at scale 0 the same call differs from the reference."""
    ref = reference("txt2img_single")
    result = generate(pipe, ref, controlnet_conditioning_scale=0.0)
    assert difference(result.images, ref["expected"]) > 10


def test_a_lora_applies_to_controlled_generation(pipe):
    """The residual path runs the same UNet weights, so a LoRA changes the controlled image,
    and removing it gives the controlled image back exactly."""
    ref = reference("txt2img_single")
    before = np.stack([np.asarray(i) for i in generate(pipe, ref).images])
    pipe.load_lora_weights(MODELS.parent / "lora" / "a_peft.safetensors", scale=1.0)
    try:
        with_lora = np.stack([np.asarray(i) for i in generate(pipe, ref).images])
    finally:
        pipe.unload_lora_weights()
    after = np.stack([np.asarray(i) for i in generate(pipe, ref).images])
    assert np.abs(with_lora.astype(int) - before).max() > 2
    assert np.array_equal(after, before)
