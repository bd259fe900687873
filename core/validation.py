"""Checks on generation settings, run before any compute so that a bad request fails at once.

Every check raises `ValidationError` (a `ValueError`) whose message names the setting, the value
given and what would be accepted. Nothing here imports NumPy or Paddle.
"""

from __future__ import annotations

import math
import numbers

#: Default ceiling on width x height: 2048 x 2048. Bigger images take minutes per step on a CPU
#: and gigabytes of attention memory; `Pipeline.max_pixels` (CLI: --max-pixels) raises it.
DEFAULT_MAX_PIXELS = 2048 * 2048

#: Default ceiling on the images of one call. Every image is kept in memory until the call
#: returns (and a billion seeds alone would exhaust it); `Pipeline.max_images` raises it.
DEFAULT_MAX_IMAGES = 1000

#: Pixel sizes must be multiples of this (and of the VAE's downsampling factor); Stable
#: Diffusion's VAE and UNet both halve sizes three times.
SIZE_MULTIPLE = 8


class ValidationError(ValueError):
    """A generation setting is invalid; raised before any model is run."""


def check_size(width, height, vae_factor: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    multiple = math.lcm(SIZE_MULTIPLE, int(vae_factor))
    for name, value in (("width", width), ("height", height)):
        _check_side(name, value, multiple)
    if width * height > max_pixels:
        raise ValidationError(
            f"size {width}x{height} is {width * height} pixels, above the limit of {max_pixels} "
            "(raise it with Pipeline.max_pixels or --max-pixels)"
        )


def _check_side(name: str, value, multiple: int) -> None:
    if not _is_int(value) or value <= 0:
        raise ValidationError(f"{name} must be a positive integer, got {value!r}")
    if value % multiple:
        lower = max(multiple, value - value % multiple)
        raise ValidationError(
            f"{name} {value} is not a multiple of {multiple} (the VAE works in blocks of "
            f"{multiple} pixels); try {lower} or {lower + multiple}"
        )


def check_steps(steps) -> None:
    if not _is_int(steps) or steps <= 0:
        raise ValidationError(f"steps must be a positive integer, got {steps!r}")


def check_guidance(guidance_scale) -> None:
    if not _is_real(guidance_scale) or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValidationError(
            f"guidance_scale must be a number >= 0 (1 or less turns guidance off), "
            f"got {guidance_scale!r}"
        )


def check_strength(strength) -> None:
    if not _is_real(strength) or not 0.0 <= strength <= 1.0:
        raise ValidationError(f"strength must be a number in [0, 1], got {strength!r}")


def check_strength_leaves_a_step(strength: float, steps) -> None:
    """A strength above 0 must run at least one step: with steps * strength < 1 the image would
    only pass through the VAE, which is not what anyone asking for a change means."""
    if _is_int(steps) and steps > 0 and strength > 0 and int(steps * strength) < 1:
        raise ValidationError(
            f"strength {strength} of {steps} steps runs no denoising step "
            f"(steps x strength = {steps * strength:g}); raise steps to at least "
            f"{math.ceil(1 / strength)} or strength to at least {1 / steps:g}"
        )


def check_eta(eta) -> None:
    if not _is_real(eta) or not math.isfinite(eta) or eta < 0:
        raise ValidationError(f"eta must be a number >= 0, got {eta!r}")


def check_count(name: str, value) -> None:
    if not _is_int(value) or value < 1:
        raise ValidationError(f"{name} must be a positive integer, got {value!r}")


def check_image_count(count: int, max_images: int = DEFAULT_MAX_IMAGES) -> None:
    if count > max_images:
        raise ValidationError(
            f"{count} images asked for in one call, above the limit of {max_images} (generate "
            "them in several calls, or raise Pipeline.max_images)"
        )


def as_prompt_list(prompt, name: str = "prompt") -> list[str]:
    """A prompt or a list of prompts as a non-empty list of strings."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValidationError(f"{name} must be a string or a non-empty list of strings")
    for item in prompts:
        if not isinstance(item, str):
            raise ValidationError(f"{name} must contain strings, got {type(item).__name__}")
    return list(prompts)


def match_negative_prompts(negative_prompt, count: int) -> list[str | None]:
    """One negative prompt per prompt: None, one string for all, or a list of `count`."""
    if negative_prompt is None or isinstance(negative_prompt, str):
        return [negative_prompt] * count
    negatives = as_prompt_list(negative_prompt, "negative_prompt")
    if len(negatives) != count:
        raise ValidationError(
            f"got {len(negatives)} negative prompts for {count} prompts; give one negative "
            "prompt, or one per prompt"
        )
    return negatives


def check_seeds(seed, count: int) -> list:
    """One seed per image: None (random), one seed (seed, seed+1, ...), or a list of `count`.

    Entries may be `paddiff.randomness.Generator` objects (for example `RecordedNoise`) instead of
    integers, which gives full control over the noise.
    """
    if seed is None:
        return [None] * count
    if not isinstance(seed, (list, tuple)):
        _check_one_seed(seed)
        if _is_int(seed):  # WebUI convention: a batch from seed s uses s, s+1, ...
            # wrapping at 2**64 keeps every recorded seed one that can be given back
            return [(int(seed) + i) % 2**64 for i in range(count)]
        if count != 1:
            raise ValidationError(f"one generator given for {count} images; give one per image")
        return [seed]
    if len(seed) != count:
        raise ValidationError(f"got {len(seed)} seeds for {count} images; give one per image")
    for item in seed:
        _check_one_seed(item)
    return list(seed)


def _check_one_seed(seed) -> None:
    if _is_int(seed):
        if not 0 <= seed < 2**64:
            raise ValidationError(f"seeds must be integers in [0, 2**64), got {seed!r}")
        return
    if hasattr(seed, "randn"):  # a paddiff.randomness.Generator
        return
    raise ValidationError(f"a seed must be a non-negative integer or a Generator, got {seed!r}")


def check_embeddings(embeds, name: str, count: int | None, encoder):
    """Embeddings as (prompts, tokens, hidden) float32, one per prompt (one given is repeated)."""
    import numpy as np

    embeds = np.asarray(embeds, dtype=np.float32)
    if embeds.ndim == 2:
        embeds = embeds[None]
    hidden = getattr(encoder, "hidden_size", None)
    if embeds.ndim != 3 or (hidden is not None and embeds.shape[2] != hidden):
        raise ValidationError(
            f"{name} must have shape (prompts, tokens, {hidden}), got {embeds.shape}"
        )
    if count is not None and len(embeds) not in (1, count):
        raise ValidationError(f"{name} has {len(embeds)} entries for {count} prompts")
    if count is not None and len(embeds) == 1:
        embeds = np.repeat(embeds, count, axis=0)
    return embeds


def check_latents(latents, shape: tuple):
    import numpy as np

    latents = np.asarray(latents, dtype=np.float32)
    if latents.shape != shape:
        raise ValidationError(f"latents must have shape {shape}, got {latents.shape}")
    return latents


def check_settings(
    *,
    steps=20,
    guidance_scale=7.5,
    eta=0.0,
    num_images=1,
    seed=None,
    width=None,
    height=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_images: int = DEFAULT_MAX_IMAGES,
    strength=None,
    scheduler=None,
) -> None:
    """The checks that need no model, for callers that refuse a bad request before loading one
    (the CLI, the PaddleHub module): the pipeline repeats them, with the model's own VAE factor
    and default size, before it runs anything. `width`/`height` None mean the model's size."""
    check_steps(steps)
    check_guidance(guidance_scale)
    check_eta(eta)
    check_count("num_images_per_prompt", num_images)
    check_image_count(num_images, max_images)
    check_seeds(seed, num_images)
    if width is not None and height is not None:
        check_size(width, height, SIZE_MULTIPLE, max_pixels)
    elif width is not None:  # the other side is the model's: the area is checked with it
        _check_side("width", width, SIZE_MULTIPLE)
    elif height is not None:
        _check_side("height", height, SIZE_MULTIPLE)
    if strength is not None:
        check_strength(strength)
        check_strength_leaves_a_step(strength, steps)
    if isinstance(scheduler, str):
        from paddiff.registry import PluginError
        from paddiff.scheduler_names import resolve_scheduler_name

        try:
            resolve_scheduler_name(scheduler)
        except PluginError as exc:
            message = exc.args[0] if exc.args else exc  # (a KeyError's str() adds quotes)
            raise ValidationError(f"unknown scheduler {scheduler!r}: {message}") from None


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
