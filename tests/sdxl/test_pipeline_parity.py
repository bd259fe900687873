"""Parity with diffusers' StableDiffusionXL(Img2Img|Inpaint)Pipeline on the tiny SDXL-shaped
base and refiner (tests/fixtures/sdxl/make_reference.py; cases in
tests/support/fixture_configs.SDXL_CASES): the same initial latents or every recorded noise
draw replayed, images within 2/255, base + refiner hand-off included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.randomness import RecordedNoise

from support.fixture_configs import SDXL_CASES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"
TOLERANCE = 2  # per pixel, out of 255
DIFFUSERS_ONLY = ("num_inference_steps", "size")

_pipelines: dict = {}


def pipeline(model: str):
    if model not in _pipelines:
        _pipelines[model] = paddiff.load_pipeline(FIXTURES / model)
    return _pipelines[model]


def reference(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def recorded_noise(ref: dict) -> RecordedNoise:
    draws = sorted((k for k in ref if k.startswith("noise_")), key=lambda k: int(k[6:]))
    return RecordedNoise([ref[k] for k in draws])


def assert_matches(images, expected) -> None:
    got = np.stack([np.asarray(image) for image in images]).astype(np.int16)
    difference = np.abs(got - expected.astype(np.int16))
    assert difference.max() <= TOLERANCE, f"max difference {difference.max()}/255"


def settings_of(case: dict) -> dict:
    """The case's diffusers settings in paddiff's words."""
    given = dict(case["settings"])
    size = given["size"]
    out = {k: v for k, v in given.items() if k not in DIFFUSERS_ONLY}
    out.update(steps=given["num_inference_steps"], width=size, height=size, progress=False)
    return out


@pytest.mark.parametrize("name", [n for n, c in SDXL_CASES.items() if c["call"] == "txt2img"])
def test_text_to_image_matches_diffusers(name):
    case, ref = SDXL_CASES[name], reference(name)
    result = pipeline(case["model"]).text_to_image(latents=ref["latents"], **settings_of(case))
    assert_matches(result.images, ref["expected"])


@pytest.mark.parametrize("name", [n for n, c in SDXL_CASES.items() if c["call"] == "img2img"])
def test_image_to_image_matches_diffusers(name):
    case, ref = SDXL_CASES[name], reference(name)
    result = pipeline(case["model"]).image_to_image(
        image=ref["image"], seed=recorded_noise(ref), **settings_of(case)
    )
    assert_matches(result.images, ref["expected"])


@pytest.mark.parametrize("name", [n for n, c in SDXL_CASES.items() if c["call"] == "inpaint"])
def test_inpaint_matches_diffusers(name):
    case, ref = SDXL_CASES[name], reference(name)
    result = pipeline(case["model"]).inpaint(
        image=ref["image"], mask_image=ref["mask"], seed=recorded_noise(ref), **settings_of(case)
    )
    assert_matches(result.images, ref["expected"])


def test_base_hands_latents_to_the_refiner_as_in_diffusers():
    """base.text_to_image(..., denoising_end=0.8, output_type="latent"), then
    refiner.image_to_image(prompt, image=latents, denoising_start=0.8)."""
    s, ref = SDXL_CASES["handoff"]["settings"], reference("handoff")
    common = dict(
        negative_prompt=s["negative_prompt"],
        steps=s["steps"],
        guidance_scale=s["guidance_scale"],
        progress=False,
    )
    handed = pipeline("base").text_to_image(
        s["prompt"],
        latents=ref["latents"],
        width=s["size"],
        height=s["size"],
        denoising_end=s["split"],
        output_type="latent",
        **common,
    )
    latents = handed.images
    np.testing.assert_allclose(latents, ref["handed"], atol=1e-4)
    result = pipeline("refiner").image_to_image(
        s["prompt"],
        image=latents,
        denoising_start=s["split"],
        aesthetic_score=s["aesthetic_score"],
        negative_aesthetic_score=s["negative_aesthetic_score"],
        seed=recorded_noise(ref),
        **common,
    )
    assert_matches(result.images, ref["expected"])
