"""SDXL's conditioning beyond the token embeddings: the pooled prompt embedding and the
micro-conditioning numbers ("time ids"), and the guided network that hands them to the UNet.

Micro-conditioning (Podell et al. 2023, "SDXL", sec. 2.2): the UNet was trained knowing each
image's original size, the top-left corner of its crop and the target size (the refiner: the
aesthetic score instead of the target size). Each number gets a sinusoidal embedding inside the
UNet. diffusers' defaults are the generated image's size and no crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from paddiff.sampling.denoiser import F32, GuidedNetwork
from paddiff.validation import ValidationError

#: the settings SDXL adds to every mode, with diffusers' defaults
MICRO_SETTINGS = {
    "original_size": None,  # (height, width); None: the image's
    "crops_coords_top_left": (0, 0),  # (top, left)
    "target_size": None,  # (height, width); None: the image's
    "negative_original_size": None,
    "negative_crops_coords_top_left": (0, 0),
    "negative_target_size": None,
    "aesthetic_score": 6.0,  # the refiner only
    "negative_aesthetic_score": 2.5,
}


@dataclass(frozen=True)
class Micro:
    """A call's micro-conditioning, checked."""

    original_size: tuple | None = None
    crops_coords_top_left: tuple = (0, 0)
    target_size: tuple | None = None
    negative_original_size: tuple | None = None
    negative_crops_coords_top_left: tuple = (0, 0)
    negative_target_size: tuple | None = None
    aesthetic_score: float = 6.0
    negative_aesthetic_score: float = 2.5

    @classmethod
    def from_settings(cls, settings: dict) -> Micro:
        values = {}
        for name, default in MICRO_SETTINGS.items():
            value = settings.pop(name, default)
            if name.endswith("score"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValidationError(f"{name} must be a number, got {value!r}")
                values[name] = float(value)
            elif value is not None:
                values[name] = _pair(name, value)
        return cls(**values)

    def time_ids(
        self, height: int, width: int, aesthetic: bool, text_to_image: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(conditional, unconditional) time ids, as diffusers' pipelines make them.

        aesthetic: the refiner's layout, (original size, crop, score); otherwise (original size,
        crop, target size). diffusers' text-to-image pipeline uses negative sizes only when
        both negative_original_size and negative_target_size are given (else the
        unconditional ids are the conditional ones); its image-to-image and inpainting
        pipelines fill in each missing negative size from the positive one."""
        size = (height, width)
        original = self.original_size or size
        target = self.target_size or size
        if aesthetic:
            cond = (*original, *self.crops_coords_top_left, self.aesthetic_score)
            negative = (
                *(self.negative_original_size or original),
                *self.negative_crops_coords_top_left,
                self.negative_aesthetic_score,
            )
        else:
            cond = (*original, *self.crops_coords_top_left, *target)
            both = self.negative_original_size and self.negative_target_size
            if text_to_image and not both:
                return np.asarray([cond], F32), np.asarray([cond], F32)
            negative = (
                *(self.negative_original_size or original),
                *self.negative_crops_coords_top_left,
                *(self.negative_target_size or target),
            )
        return np.asarray([cond], F32), np.asarray([negative], F32)


def _pair(name: str, value) -> tuple[int, int]:
    try:
        pair = tuple(int(v) for v in value)
        exact = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        pair, exact = (), False
    if len(pair) != 2 or not exact or min(pair) < 0:
        raise ValidationError(f"{name} must be two whole numbers >= 0, got {value!r}")
    return pair


@dataclass(frozen=True)
class XLConditioning:
    """One image's conditioning for SDXL's UNet: token embeddings (1, L, D), the pooled
    embedding (1, P) and the time ids (1, n)."""

    hidden: np.ndarray
    pooled: np.ndarray
    time_ids: np.ndarray

    @property
    def shape(self):  # GuidedNetwork groups images whose embeddings have the same shape
        return self.hidden.shape


class XLGuidedNetwork(GuidedNetwork):
    """`GuidedNetwork` whose conditionings are `XLConditioning`s: the UNet also gets
    diffusers' added_cond_kwargs (text_embeds, time_ids). Control nets are not supported for
    SDXL (paddiff.control refuses them), so `plain` is unused."""

    def _group_output(self, x_in, t, group: list[int], plain=None) -> np.ndarray:
        conds = [self.cond[i] for i in group]
        if self.uncond is not None:  # one call holding [unconditional; conditional]
            x_in, conds = np.concatenate([x_in, x_in]), [self.uncond[i] for i in group] + conds
        added = {
            "text_embeds": np.concatenate([c.pooled for c in conds]),
            "time_ids": np.concatenate([c.time_ids for c in conds]),
        }
        hidden = np.concatenate([c.hidden for c in conds])
        output = np.asarray(self.denoiser(x_in, t, hidden, added), dtype=F32)
        if self.uncond is None:
            return output
        uncond, cond = output[: len(group)], output[len(group) :]
        return uncond + self.guidance_scale * (cond - uncond)
