"""The control-net parity cases (tests/fixtures/controlnet/*.npz, written by its
make_reference.py with diffusers) and how to run one through a paddiff pipeline."""

from __future__ import annotations

import numpy as np
from paddiff.randomness import RecordedNoise

from support.pipeline_fixtures import MODELS

FIXTURES = MODELS.parent / "controlnet"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz") if p.stem != "residuals")
TOLERANCE = 2


def reference(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def noise_arrays(ref) -> list[np.ndarray]:
    keys = sorted((k for k in ref if k.startswith("noise_")), key=lambda k: int(k[6:]))
    return [ref[k] for k in keys]


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
