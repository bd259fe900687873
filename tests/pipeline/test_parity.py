"""Parity with diffusers' Stable Diffusion pipelines on the tiny fixture models.

The references (tests/fixtures/pipeline/*.npz, made by make_reference.py there) hold the initial
latents, or every noise array the reference drew, which paddiff replays through `RecordedNoise`;
its images must then match the reference's within 2/255 per pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.randomness import RecordedNoise

from support.fixture_configs import PIPELINE_CASES
from support.pipeline_fixtures import REFERENCES, fixture_pipeline

TOLERANCE = 2  # per pixel, out of 255


def cases(call: str) -> list[tuple[str, str]]:
    """(reference name, model folder) of the recorded cases of one pipeline call."""
    return [(name, c["model"]) for name, c in PIPELINE_CASES.items() if c["call"] == call]


def reference(name: str) -> dict:
    with np.load(REFERENCES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def recorded_noise(ref: dict) -> RecordedNoise:
    draws = sorted((k for k in ref if k.startswith("noise_")), key=lambda k: int(k[6:]))
    return RecordedNoise([ref[k] for k in draws])


def assert_matches(images, expected) -> None:
    got = np.stack([np.asarray(image) for image in images]).astype(np.int16)
    difference = np.abs(got - expected.astype(np.int16))
    assert difference.max() <= TOLERANCE, f"max difference {difference.max()}/255"


def common(ref: dict) -> dict:
    size = int(ref["size"])
    return dict(
        steps=int(ref["steps"]),
        guidance_scale=float(ref["guidance_scale"]),
        width=size,
        height=size,
        progress=False,
    )


@pytest.mark.parametrize("case, model", cases("text_to_image"))
def test_text_to_image_matches_diffusers(case, model):
    ref = reference(case)
    pipe = fixture_pipeline(model, scheduler=str(ref["scheduler"]))
    result = pipe.text_to_image(
        [str(p) for p in ref["prompts"]],
        negative_prompt=str(ref["negative_prompt"]),
        latents=ref["latents"],
        seed=[0, 1],
        **common(ref),
    )
    assert_matches(result.images, ref["expected"])


@pytest.mark.parametrize("case, model", cases("image_to_image"))
def test_image_to_image_matches_diffusers(case, model):
    ref = reference(case)
    pipe = fixture_pipeline(model, scheduler=str(ref["scheduler"]))
    result = pipe.image_to_image(
        str(ref["prompts"][0]),
        ref["image"],
        strength=float(ref["strength"]),
        seed=recorded_noise(ref),
        **common(ref),
    )
    assert_matches(result.images, ref["expected"])


@pytest.mark.parametrize("case, model", cases("inpaint"))
def test_inpaint_matches_diffusers(case, model):
    ref = reference(case)
    pipe = fixture_pipeline(model, scheduler=str(ref["scheduler"]))
    result = pipe.inpaint(
        str(ref["prompts"][0]),
        ref["image"],
        ref["mask"],
        strength=float(ref["strength"]),
        seed=recorded_noise(ref),
        **common(ref),
    )
    assert_matches(result.images, ref["expected"])
