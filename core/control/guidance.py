"""What control nets add to each denoiser call of one generation.

For every denoiser call the control nets whose guidance window covers the current step read the
same input as the UNet (without an inpainting UNet's extra channels) and their control image,
and their residuals, each times its scale, are summed and handed to the UNet (diffusers'
`down_block_additional_residuals` / `mid_block_additional_residual`).

Guess mode (ControlNet's "control mode: my prompt is less important" relative): with
classifier-free guidance the control nets see only the conditional half, the unconditional half
gets no residuals, and residuals are scaled from 0.1 at the first skip to 1.0 at the middle
block (geometrically), as diffusers does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass
class ControlUnit:
    """One control net with its control image and settings for one generation."""

    net: object  # a paddiff.interfaces.ControlNet
    image: np.ndarray  # (1 or images, channels, height, width) in [0, 1]
    scale: float = 1.0
    start: float = 0.0  # fraction of the steps before which it is off
    end: float = 1.0  # fraction of the steps after which it is off
    preprocessor: str = "none"  # what made the control image (recorded in PNG parameters)

    def active(self, step: int, steps: int) -> bool:
        """diffusers' `controlnet_keep` rule for step `step` of `steps`."""
        return not (step / steps < self.start or (step + 1) / steps > self.end)


def guess_mode_scales(count: int, scale: float) -> np.ndarray:
    """Per-residual scales in guess mode: 10^-1 ... 10^0 over the skips and the middle block."""
    return np.logspace(-1, 0, count, dtype=np.float64).astype(F32) * F32(scale)


class ControlGuidance:
    """Called by `paddiff.sampling.denoiser.GuidedNetwork` once per denoiser call; returns the
    keyword arguments to add to it ({} when no control net is active at this step)."""

    def __init__(self, units: list[ControlUnit], steps: int, guess_mode: bool = False):
        self.units = list(units)
        self.steps = steps
        self.guess_mode = guess_mode
        self.step = 0  # the sampling step now running (the pipeline's step callback sets it)

    def __call__(self, x_in, t, conditioning, images: list[int], guided: bool) -> dict:
        """x_in: the group's latents (one per image, UNet input without extra channels);
        conditioning: the embeddings as the UNet gets them ([uncond; cond] when guided);
        images: which images of the batch these are (for per-image control images)."""
        downs, mid = None, None
        for unit in self.units:
            scale = unit.scale if unit.active(self.step, self.steps) else 0.0
            if scale == 0.0:
                continue  # residuals times 0 change nothing: skip the network
            unit_downs, unit_mid = self._residuals(unit, x_in, t, conditioning, images, guided)
            if self.guess_mode:
                scales = guess_mode_scales(len(unit_downs) + 1, scale)
            else:
                scales = np.full(len(unit_downs) + 1, F32(scale))
            unit_downs = [d * s for d, s in zip(unit_downs, scales[:-1], strict=True)]
            unit_mid = unit_mid * scales[-1]
            if self.guess_mode and guided:  # the unconditional half gets nothing
                unit_downs = [np.concatenate([np.zeros_like(d), d]) for d in unit_downs]
                unit_mid = np.concatenate([np.zeros_like(unit_mid), unit_mid])
            if downs is None:
                downs, mid = unit_downs, unit_mid
            else:
                downs = [a + b for a, b in zip(downs, unit_downs, strict=True)]
                mid = mid + unit_mid
        if downs is None:
            return {}
        return {"down_block_additional_residuals": downs, "mid_block_additional_residual": mid}

    def _residuals(self, unit, x_in, t, conditioning, images, guided):
        n = len(images)
        image = unit.image if len(unit.image) == 1 else unit.image[images]
        image = np.broadcast_to(image, (n, *image.shape[1:]))
        if guided and self.guess_mode:
            x, context = x_in, conditioning[n:]
        elif guided:
            x, context = np.concatenate([x_in, x_in]), conditioning
            image = np.concatenate([image, image])
        else:
            x, context = x_in, conditioning
        downs, mid = unit.net(x, t, context, np.ascontiguousarray(image, dtype=F32))
        return [np.asarray(d, F32) for d in downs], np.asarray(mid, F32)
