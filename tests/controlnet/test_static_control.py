"""Controlled generation on the fast path: with `execution="static"` the UNet runs an exported
program that takes the control residuals (not the dynamic graph), still equal to diffusers."""

from __future__ import annotations

import numpy as np
import paddiff
import pytest

from support.control_cases import TOLERANCE, difference, generate, reference
from support.pipeline_fixtures import MODELS


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    cache = tmp_path_factory.mktemp("control-cache")
    return paddiff.load_pipeline(
        MODELS / "sd1", scheduler="DDIMScheduler", execution="static", cache_dir=cache
    )


def unet_programs(pipe) -> list[str]:
    runner = pipe.denoiser.networks()[0]
    return sorted(p.parent.name for p in runner._cache.root.rglob("unet-*/program.json"))


@pytest.mark.parametrize("case", ["txt2img_single", "txt2img_multi", "txt2img_guess"])
def test_static_controlled_generation_matches_diffusers(pipe, case):
    ref = reference(case)
    assert difference(generate(pipe, ref).images, ref["expected"]) <= TOLERANCE
    runner = pipe.denoiser.networks()[0]
    assert runner.mode == "static" and runner._predictor is not None  # a program ran it
    assert [spec.name for spec in runner.inputs][-1] == "mid_residual"


def test_one_unet_program_serves_plain_and_controlled_calls(pipe):
    """After a controlled image, a plain one runs the same residual program with zero
    residuals, and equals what the plain program gives."""
    ref = reference("txt2img_single")
    generate(pipe, ref)
    programs = unet_programs(pipe)
    pipe.unload_controlnet()
    plain_args = dict(steps=3, width=64, height=64, seed=5, progress=False)
    plain = np.asarray(pipe.text_to_image("a red star", **plain_args).images[0], np.int16)
    assert unet_programs(pipe) == programs  # nothing exported for the plain call
    fresh = paddiff.load_pipeline(MODELS / "sd1", scheduler="DDIMScheduler")
    expected = np.asarray(fresh.text_to_image("a red star", **plain_args).images[0], np.int16)
    assert np.abs(plain - expected).max() <= TOLERANCE


def test_a_lora_reaches_the_residual_program(pipe):
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
