"""Bad settings fail with a message naming the problem, before any component is run."""

from __future__ import annotations

import re

import numpy as np
import paddiff
import pytest
from PIL import Image

from support.pipeline_toys import toy_pipeline

IMAGE = Image.new("RGB", (32, 32))
MASK = Image.new("L", (32, 32), 255)

CASES = {
    "width not a multiple of 8": (dict(width=36), "width 36 is not a multiple of 8"),
    "height not a multiple of 8": (dict(height=20), "height 20 is not a multiple of 8"),
    "zero width": (dict(width=0), "width must be a positive integer"),
    "above the pixel limit": (dict(width=4096, height=4096), "above the limit of"),
    "zero steps": (dict(steps=0), "steps must be a positive integer, got 0"),
    "negative steps": (dict(steps=-3), "steps must be a positive integer, got -3"),
    "fractional steps": (dict(steps=2.5), "steps must be a positive integer"),
    "negative guidance": (dict(guidance_scale=-1.0), "guidance_scale must be a number >= 0"),
    "nan guidance": (dict(guidance_scale=float("nan")), "guidance_scale"),
    "negative eta": (dict(eta=-0.5), "eta must be a number >= 0"),
    "no images": (dict(num_images_per_prompt=0), "num_images_per_prompt must be a positive"),
    # -n 1000000000 used to build a billion seeds (then images) until the OOM killer came
    "too many images": (
        dict(num_images_per_prompt=1001),
        "1001 images asked for in one call, above the limit of 1000",
    ),
    "seed count": (dict(seed=[1, 2, 3]), "got 3 seeds for 1 images"),
    "negative seed": (dict(seed=-1), "seeds must be integers in [0, 2**64)"),
    "seed of wrong type": (dict(seed="abc"), "a seed must be a non-negative integer"),
    "unknown scheduler": (dict(scheduler="no-such-sampler"), "unknown scheduler 'no-such-sampler'"),
    "empty prompt list": (dict(prompt=[]), "prompt must be a string or a non-empty list"),
    "negatives count": (dict(negative_prompt=["a", "b"]), "got 2 negative prompts for 1 prompts"),
    "prompt and embeddings": (dict(prompt_embeds=np.zeros((1, 8, 4))), "not both"),
    "embedding width": (
        dict(prompt=None, prompt_embeds=np.zeros((1, 8, 5))),
        "prompt_embeds must have shape (prompts, tokens, 4)",
    ),
    "latents shape": (dict(latents=np.zeros((1, 4, 8, 8))), "latents must have shape (1, 4, 4, 4)"),
}


def run(mode: str, pipe, overrides: dict):
    kwargs = {"prompt": "a cat", "steps": 2, "progress": False, **overrides}
    if mode == "txt2img":
        return pipe.text_to_image(**kwargs)
    kwargs.pop("latents", None)
    if mode == "img2img":
        return pipe.image_to_image(image=kwargs.pop("image", IMAGE), **kwargs)
    return pipe.inpaint(
        image=kwargs.pop("image", IMAGE), mask_image=kwargs.pop("mask_image", MASK), **kwargs
    )


@pytest.mark.parametrize("case", list(CASES))
def test_bad_settings_raise_before_any_compute(case):
    overrides, message = CASES[case]
    pipe = toy_pipeline()
    with pytest.raises(paddiff.ValidationError, match=re.escape(message)):
        run("txt2img", pipe, overrides)
    assert pipe.text_encoder.encoded == [] and pipe.denoiser.calls == []
    assert pipe.vae.decoded_batches == []


def test_unknown_scheduler_lists_the_known_ones():
    with pytest.raises(paddiff.ValidationError) as error:
        toy_pipeline().text_to_image("a cat", scheduler="DDIMSchedulr", progress=False)
    message = str(error.value)
    assert "Did you mean 'DDIMScheduler'?" in message
    assert "Known names:" in message and "dpm++2m-karras" in message and "euler-a" in message


def test_validation_error_is_a_value_error():
    assert issubclass(paddiff.ValidationError, ValueError)


IMAGE_CASES = {
    "strength above 1": ("img2img", dict(strength=1.5), "strength must be a number in [0, 1]"),
    "strength below 0": ("inpaint", dict(strength=-0.1), "strength must be a number in [0, 1]"),
    "strength runs no step": (
        "img2img",
        dict(strength=0.1, steps=5),
        "strength 0.1 of 5 steps runs no denoising step (steps x strength = 0.5); "
        "raise steps to at least 10 or strength to at least 0.2",
    ),
    "missing file": ("img2img", dict(image="/nonexistent/cat.png"), "image file not found"),
    "mask size": (
        "inpaint",
        dict(mask_image=Image.new("L", (32, 40))),
        "mask_image is 32x40 but image is 32x32",
    ),
    "bad array": ("img2img", dict(image=np.zeros((3, 32, 32))), "channels last"),
    "image size": ("img2img", dict(width=30), "width 30 is not a multiple of 8"),
    "bad steps": ("inpaint", dict(steps=0), "steps must be a positive integer"),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_image_inputs_raise_before_any_compute(case):
    mode, overrides, message = IMAGE_CASES[case]
    pipe = toy_pipeline()
    with pytest.raises(paddiff.ValidationError, match=re.escape(message)):
        run(mode, pipe, overrides)
    assert pipe.text_encoder.encoded == [] and pipe.denoiser.calls == []


def test_unreadable_image_file(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(paddiff.ValidationError, match="cannot read image file"):
        toy_pipeline().image_to_image("a cat", str(broken), progress=False)


def test_pixel_limit_is_configurable():
    pipe = toy_pipeline(max_pixels=32 * 32)
    pipe.text_to_image("a cat", width=32, height=32, steps=1, progress=False)
    with pytest.raises(paddiff.ValidationError, match="1536 pixels, above the limit of 1024"):
        pipe.text_to_image("a cat", width=48, height=32, steps=1, progress=False)


def test_batch_seeds_wrap_at_2_to_the_64_so_each_can_be_given_back():
    from paddiff.validation import check_seeds

    assert check_seeds(2**64 - 1, 3) == [2**64 - 1, 0, 1]
