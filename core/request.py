"""A generation request: every setting of one call, checked once, before any compute.

The three modes take the same settings (below, with their defaults); they differ only in their
inputs (an image, a mask) and in how they make the first latents (paddiff.modes). A request
is frozen: nothing downstream changes it, so the settings recorded in each PNG are the ones used.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddiff
from paddiff import images as imageio
from paddiff import validation as check
from paddiff.randomness import Generator
from paddiff.sampling import Sampler
from paddiff.sampling.sampler import scheduler_class_name
from paddiff.scheduler_names import create_scheduler
from paddiff.validation import ValidationError

#: The settings every mode accepts, with their defaults (documented in docs/pipeline.md).
SETTINGS: dict[str, Any] = {
    "steps": 20,
    "guidance_scale": 7.5,
    "width": None,  # None: the model's native size (text-to-image) or the image's size
    "height": None,
    "num_images_per_prompt": 1,
    "seed": None,  # one seed (image i gets seed + i), one per image, or None for random ones
    "eta": 0.0,  # DDIM's stochasticity; other samplers ignore it, as in diffusers
    "scheduler": None,  # None: the pipeline's own; a name ("dpm++2m-karras") or an instance
    "prompt_embeds": None,
    "negative_prompt_embeds": None,
}
#: Mode-specific settings: text-to-image can start from given latents; the others from an image.
MODE_SETTINGS = {
    "txt2img": {"latents": None},
    "img2img": {"strength": 0.8},
    "inpaint": {"strength": 1.0},
}


@dataclass(frozen=True)
class Request:
    """One call, validated. Per image: its prompt, negative prompt, the index of the prompt it
    came from (for given embeddings) and its seed (an int, or a caller's Generator)."""

    mode: str
    prompts: tuple[str | None, ...]
    negative_prompts: tuple[str | None, ...]
    prompt_index: tuple[int, ...]
    seeds: tuple[Any, ...]
    steps: int
    guidance_scale: float
    eta: float
    width: int
    height: int
    scheduler: Any  # a ConfiguredSampler, or a scheduler written to the protocol
    scheduler_name: str
    strength: float | None = None
    prompt_embeds: np.ndarray | None = None
    negative_prompt_embeds: np.ndarray | None = None
    latents: np.ndarray | None = None
    image: Any = None  # PIL images, image-to-image and inpainting
    mask: Any = None

    @property
    def count(self) -> int:
        return len(self.prompts)

    @property
    def guided(self) -> bool:
        """Classifier-free guidance runs only with a scale above 1."""
        return self.guidance_scale > 1.0


def build_request(
    pipeline, mode: str, prompt, negative_prompt, settings: dict, image=None, mask_image=None
):
    """Check `settings` (keyword arguments of a mode method) and the mode's images against the
    pipeline's limits and resolve prompts, seeds, size and scheduler. Raises ValidationError
    (or TypeError for an unknown keyword) before anything is computed."""
    allowed = {**SETTINGS, **MODE_SETTINGS[mode]}
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"settings are {', '.join(allowed)}"
        )
    s = {**allowed, **settings}
    strength = s.get("strength")
    if strength is not None:
        check.check_strength(strength)
        check.check_strength_leaves_a_step(strength, s["steps"])
    inputs = _mode_inputs(pipeline, mode, image, mask_image)
    width, height = _size(pipeline, s["width"], s["height"], inputs.get("image"))
    check.check_steps(s["steps"])
    check.check_guidance(s["guidance_scale"])
    check.check_eta(s["eta"])
    per_prompt = s["num_images_per_prompt"]
    check.check_count("num_images_per_prompt", per_prompt)
    check.check_size(width, height, pipeline.vae_factor, pipeline.max_pixels)
    prompts, cond_embeds = _prompts_or_embeddings(pipeline, prompt, s["prompt_embeds"])
    negatives = check.match_negative_prompts(negative_prompt, len(prompts))
    uncond_embeds = None
    if s["negative_prompt_embeds"] is not None:
        if negative_prompt is not None:
            raise ValidationError("give negative_prompt or negative_prompt_embeds, not both")
        uncond_embeds = check.check_embeddings(
            s["negative_prompt_embeds"],
            "negative_prompt_embeds",
            len(prompts),
            pipeline.text_encoder,
        )
    count = len(prompts) * per_prompt
    check.check_image_count(count, pipeline.max_images)
    seeds = [
        secrets.randbelow(2**32) if seed is None else seed
        for seed in check.check_seeds(s["seed"], count)
    ]
    scheduler, scheduler_name = resolve_scheduler(pipeline.scheduler, s["scheduler"])
    latents = s.get("latents")
    if latents is not None:
        f = pipeline.vae_factor
        shape = (count, int(pipeline.vae.latent_channels), height // f, width // f)
        latents = check.check_latents(latents, shape)
    owner = [i // per_prompt for i in range(count)]  # image i belongs to prompt i // per_prompt
    return Request(
        mode=mode,
        prompts=tuple(prompts[k] for k in owner),
        negative_prompts=tuple(negatives[k] for k in owner),
        prompt_index=tuple(owner),
        seeds=tuple(seeds),
        steps=s["steps"],
        guidance_scale=s["guidance_scale"],
        eta=s["eta"],
        width=width,
        height=height,
        scheduler=scheduler,
        scheduler_name=scheduler_name,
        strength=strength,
        prompt_embeds=cond_embeds,
        negative_prompt_embeds=uncond_embeds,
        latents=latents,
        **inputs,
    )


def generator_for(seed) -> Generator:
    return seed if isinstance(seed, Generator) else Generator(seed)


def seed_of(seed) -> int:
    return seed.seed if isinstance(seed, Generator) else seed


def resolve_scheduler(base, choice) -> tuple[Any, str]:
    """(scheduler, display name) for a per-call choice: None (the pipeline's own), a name or
    alias made from the pipeline's scheduler config, a `Sampler`, or a ready scheduler."""
    if choice is None:
        return base, scheduler_class_name(base)
    if isinstance(choice, Sampler):
        return choice.from_config(dict(base.config)), choice.name
    if not isinstance(choice, str):
        return choice, scheduler_class_name(choice)
    try:
        return create_scheduler(choice, dict(base.config)), choice
    except (KeyError, ValueError, paddiff.PluginError) as exc:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise ValidationError(f"unknown scheduler {choice!r}: {message}") from None


def _mode_inputs(pipeline, mode: str, image, mask_image) -> dict:
    """The PIL images a mode works on, read and checked."""
    if mode == "txt2img":
        return {}
    picture = imageio.load_image(image, "image")
    if mode == "img2img":
        return {"image": picture}
    mask = imageio.load_image(mask_image, "mask_image")
    if mask.size != picture.size:
        raise ValidationError(
            f"mask_image is {mask.size[0]}x{mask.size[1]} but image is "
            f"{picture.size[0]}x{picture.size[1]}; they must be the same size"
        )
    channels, latent_channels = (
        int(pipeline.denoiser.in_channels),
        int(pipeline.vae.latent_channels),
    )
    if channels not in (latent_channels, 2 * latent_channels + 1):
        raise ValidationError(
            f"inpainting needs a denoiser with {latent_channels} or "
            f"{2 * latent_channels + 1} input channels; this one has {channels}"
        )
    return {"image": picture, "mask": mask}


def _prompts_or_embeddings(pipeline, prompt, prompt_embeds):
    if prompt_embeds is None:
        if prompt is None:
            raise ValidationError("give a prompt (or prompt_embeds)")
        return check.as_prompt_list(prompt), None
    if prompt is not None:
        raise ValidationError("give prompt or prompt_embeds, not both")
    embeds = check.check_embeddings(prompt_embeds, "prompt_embeds", None, pipeline.text_encoder)
    return [None] * len(embeds), embeds


def _size(pipeline, width, height, image) -> tuple[int, int]:
    """The requested size; else the image's own size rounded down to a valid multiple, or
    the model's native size for text-to-image."""
    if image is None:
        native_width, native_height = pipeline.native_size()
        return (native_width if width is None else width), (
            native_height if height is None else height
        )
    multiple = math.lcm(check.SIZE_MULTIPLE, pipeline.vae_factor)
    if width is None:
        width = max(multiple, image.size[0] - image.size[0] % multiple)
    if height is None:
        height = max(multiple, image.size[1] - image.size[1] % multiple)
    return width, height
