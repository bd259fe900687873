"""Whole control-net pipelines against diffusers' StableDiffusionControlNet(Img2Img|Inpaint)
Pipeline on the tiny sd1 model and fixture control nets (tests/fixtures/controlnet): the same
noise gives the same images within 2/255."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.randomness import RecordedNoise

from support.pipeline_fixtures import MODELS, fixture_pipeline

FIXTURES = MODELS.parent / "controlnet"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz") if p.stem != "residuals")
TOLERANCE = 2


def reference(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def noise_arrays(ref) -> list[np.ndarray]:
    keys = sorted((k for k in ref if k.startswith("noise_")), key=lambda k: int(k[6:]))
    return [ref[k] for k in keys]


@pytest.fixture(scope="module")
def pipe():
    return fixture_pipeline("sd1", scheduler="DDIMScheduler")


def generate(pipe, ref, **overrides):
    nets = [str(n) for n in ref["nets"]]
    pipe.load_controlnet([FIXTURES / n for n in nets])
    controls = [ref[f"control_{i}"] for i in range(len(nets))]
    size = int(ref["size"])
    kwargs = dict(
        steps=int(ref["steps"]),
        guidance_scale=float(ref["guidance_scale"]),
        width=size,
        height=size,
        progress=False,
        control_image=controls if len(nets) > 1 else controls[0],
        controlnet_conditioning_scale=[float(s) for s in ref["scale"]],
        control_guidance_start=[float(s) for s in ref["start"]],
        control_guidance_end=[float(s) for s in ref["end"]],
        guess_mode=bool(ref["guess"]),
    )
    kwargs.update(overrides)
    call = str(ref["call"])
    prompts = [str(p) for p in ref["prompts"]]
    negative = str(ref["negative_prompt"])
    if call == "txt2img":
        return pipe.text_to_image(
            prompts, negative_prompt=negative, latents=noise_arrays(ref)[0], **kwargs
        )
    noise = RecordedNoise(noise_arrays(ref))
    strength = float(ref["strength"])
    if call == "img2img":
        return pipe.image_to_image(
            prompts[0], ref["image"], strength, negative, seed=noise, **kwargs
        )
    return pipe.inpaint(
        prompts[0], ref["image"], ref["mask"], strength, negative, seed=noise, **kwargs
    )


def difference(images, expected) -> int:
    got = np.stack([np.asarray(image) for image in images]).astype(np.int16)
    return int(np.abs(got - expected.astype(np.int16)).max())


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
