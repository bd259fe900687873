"""What differs between text-to-image, image-to-image and inpainting: how the first latents
are made, which extra channels the denoiser sees, and what happens after each step.

Each image draws from its own generator, in the reference pipelines' order (image posterior,
then noise, then the masked image's posterior), so recorded reference noise replays exactly and
image i of a batch equals the same seed alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from paddiff import images as imageio
from paddiff.randomness import BatchNoise


@dataclass
class Start:
    """The first latents of a run, the denoiser's extra input channels (inpainting UNets),
    and what to do after each step (callback(i, x) -> x)."""

    latents: np.ndarray
    extra: np.ndarray | None = None
    after_step: Callable[[int, np.ndarray], np.ndarray] | None = None


def start(pipeline, request, plan, noise: BatchNoise) -> Start:
    return {"txt2img": text_to_image, "img2img": image_to_image, "inpaint": inpaint}[request.mode](
        pipeline, request, plan, noise
    )


def text_to_image(pipeline, request, plan, noise) -> Start:
    initial = (
        request.latents if request.latents is not None else noise(latent_shape(pipeline, request))
    )
    return Start(plan.initial(initial))


def image_to_image(pipeline, request, plan, noise) -> Start:
    pixels = imageio.image_to_array(request.image, request.width, request.height)
    image_latents = encode(pipeline, pixels, noise)
    if plan.start >= request.steps:  # strength 0: nothing to repaint
        return Start(image_latents)
    return Start(plan.noised(image_latents, noise(image_latents.shape), plan.start))


def inpaint(pipeline, request, plan, noise) -> Start:
    """An inpainting UNet (2 x latent channels + 1 inputs) also sees the mask and the latents of
    the image with the masked part blanked. An ordinary UNet is steered instead: after every
    step the latents outside the mask are replaced by the image's, noised to the next step."""
    width, height, f = request.width, request.height, pipeline.vae_factor
    pixels = imageio.image_to_array(request.image, width, height)
    repaint = imageio.mask_to_array(request.mask, width, height)
    latent_mask = imageio.resize_nearest(repaint, height // f, width // f)
    inpainting_unet = int(pipeline.denoiser.in_channels) != int(pipeline.vae.latent_channels)
    from_noise = request.strength >= 1.0
    image_latents = None
    if not inpainting_unet or not from_noise:
        image_latents = encode(pipeline, pixels, noise)
    first_noise = noise(latent_shape(pipeline, request))
    if from_noise:
        latents = plan.initial(first_noise)
    elif plan.start >= request.steps:
        latents = image_latents
    else:
        latents = plan.noised(image_latents, first_noise, plan.start)
    if inpainting_unet:
        masked_latents = encode(pipeline, pixels * (repaint < 0.5), noise)
        mask = np.broadcast_to(latent_mask, (request.count, *latent_mask.shape[1:]))
        return Start(latents, extra=np.concatenate([mask, masked_latents], axis=1))

    def keep_unmasked(i, x):
        known = plan.noised(image_latents, first_noise, i + 1)
        return ((1.0 - latent_mask) * known + latent_mask * x).astype(np.float32)

    return Start(latents, after_step=keep_unmasked)


def latent_shape(pipeline, request) -> tuple[int, int, int, int]:
    f = pipeline.vae_factor
    return (
        request.count,
        int(pipeline.vae.latent_channels),
        request.height // f,
        request.width // f,
    )


def encode(pipeline, pixels: np.ndarray, noise: BatchNoise) -> np.ndarray:
    """Scaled latents of `pixels` for every image, each a posterior sample from its own
    generator (one image per call: encoding never depends on the rest of the batch)."""
    vae, scaling = pipeline.vae, np.float32(pipeline.vae.scaling_factor)
    latents = [np.asarray(vae.encode(pixels, g), dtype=np.float32) for g in noise.generators]
    return np.concatenate(latents) * scaling
