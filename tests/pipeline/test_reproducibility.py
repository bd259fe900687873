"""Reproducibility with the real Paddle components on the tiny sd1 fixture model."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.png_info import parse_parameters
from PIL import Image

from support.helpers import run_cli
from support.pipeline_fixtures import MODELS, fixture_pipeline

STEPS = 5


@pytest.fixture(scope="module")
def sd1():
    # An ancestral sampler, so the scheduler's own noise is covered too.
    return fixture_pipeline("sd1", scheduler="EulerAncestralDiscreteScheduler")


def pixels(image) -> bytes:
    return np.asarray(image).tobytes()


def test_each_image_of_a_batch_equals_its_seed_alone(sd1):
    batch = sd1.text_to_image(
        ["a red circle", "a blue square"],
        negative_prompt="blurry",
        num_images_per_prompt=2,
        seed=[3, 4, 5, 6],
        steps=STEPS,
        progress=False,
    )
    for image, settings in zip(batch.images, batch.settings, strict=True):
        alone = sd1.text_to_image(
            settings["prompt"], "blurry", seed=settings["seed"], steps=STEPS, progress=False
        )
        assert pixels(alone.images[0]) == pixels(image), settings["seed"]


def test_image_to_image_batch_equals_single_runs(sd1):
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    batch = sd1.image_to_image(
        "a cat", source, num_images_per_prompt=2, seed=9, steps=STEPS, progress=False
    )
    second = sd1.image_to_image("a cat", source, seed=10, steps=STEPS, progress=False)
    assert pixels(batch.images[1]) == pixels(second.images[0])
    assert pixels(batch.images[0]) != pixels(batch.images[1])


def test_generate_cli_writes_a_png_that_reproduces_in_process(tmp_path, sd1):
    """`paddiff generate` in a new process: the PNG's parameters chunk reads back with Pillow,
    and its pixels equal the same settings run here (run after run, process after process)."""
    out = tmp_path / "cat.png"
    result = run_cli(
        "generate",
        "a red circle",
        "--model",
        str(MODELS / "sd1"),
        "-o",
        str(out),
        "--seed",
        "7",
        "--steps",
        str(STEPS),
        "--scheduler",
        "EulerAncestralDiscreteScheduler",
        "--guidance",
        "6",
        "--negative",
        "blurry",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{out}  seed 7"
    with Image.open(out) as image:
        text = image.text["parameters"]
        cli_pixels = pixels(image.convert("RGB"))
    assert text.splitlines()[:2] == ["a red circle", "Negative prompt: blurry"]
    fields = parse_parameters(text)
    assert fields["Steps"] == str(STEPS) and fields["Seed"] == "7"
    assert fields["Sampler"] == "Euler a" and fields["CFG scale"] == "6"
    assert (
        fields["Size"] == "32x32" and fields["Model"] == "sd1" and len(fields["Model hash"]) == 10
    )
    here = sd1.text_to_image(
        "a red circle", "blurry", seed=7, steps=STEPS, guidance_scale=6.0, progress=False
    )
    assert pixels(here.images[0]) == cli_pixels


def test_third_party_scheduler_runs_through_the_same_pipeline_path(sd1, plugin_path, monkeypatch):
    """The example package's scheduler, found through its installed entry point, drives the real
    pipeline exactly as a built-in does: chosen by name per call, reproducible, recorded."""
    import paddiff.registry

    monkeypatch.setattr(paddiff.registry, "_default_registry", None)  # rescan with the plugin
    first = sd1.text_to_image(
        "a cat", seed=7, steps=STEPS, scheduler="example-euler", progress=False
    )
    again = sd1.text_to_image(
        "a cat", seed=7, steps=STEPS, scheduler="example-euler", progress=False
    )
    builtin = sd1.text_to_image("a cat", seed=7, steps=STEPS, scheduler="euler", progress=False)
    assert pixels(first.images[0]) == pixels(again.images[0])
    assert pixels(first.images[0]) != pixels(builtin.images[0])
    assert "example-euler" in str(first.settings[0].values())
