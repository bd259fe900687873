"""Conversions between user images (files, PIL, NumPy) and the arrays the VAE takes and returns.

Pixel arrays at the VAE are NCHW float32 in [-1, 1]; masks are N1HW with 1 where the image is to
be repainted and 0 where it is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paddiff.validation import ValidationError


def load_image(source, name: str = "image"):
    """A PIL image from a path, a PIL image or a NumPy array (HxW or HxWxC; uint8, or float in
    [0, 1]). Unreadable files raise `ValidationError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, Path)):
        try:
            with Image.open(source) as image:
                image.load()
                return image
        except FileNotFoundError:
            raise ValidationError(f"{name} file not found: {source}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValidationError(f"cannot read {name} file {source}: {exc}") from None
    if isinstance(source, np.ndarray):
        return Image.fromarray(_array_to_uint8(source, name))
    raise ValidationError(
        f"{name} must be a file path, a PIL image or a NumPy array, got {type(source).__name__}"
    )


def image_to_array(image, width: int, height: int) -> np.ndarray:
    """(1, 3, height, width) float32 in [-1, 1]; resized (Lanczos) only if the size differs."""
    image = image.convert("RGB")
    if image.size != (width, height):
        from PIL import Image

        image = image.resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return (pixels * 2.0 - 1.0).transpose(2, 0, 1)[None]


def mask_to_array(mask, width: int, height: int) -> np.ndarray:
    """(1, 1, height, width) float32 of 0s and 1s: grey levels >= 0.5 mean "repaint here"."""
    mask = mask.convert("L")
    if mask.size != (width, height):
        from PIL import Image

        mask = mask.resize((width, height), Image.Resampling.LANCZOS)
    values = np.asarray(mask, dtype=np.float32) / 255.0
    return (values >= 0.5).astype(np.float32)[None, None]


def array_to_image(decoded: np.ndarray):
    """A PIL image from one decoded (3, H, W) array in about [-1, 1]."""
    from PIL import Image

    unit = np.clip(decoded / 2.0 + 0.5, 0.0, 1.0)
    pixels = np.round(unit.transpose(1, 2, 0) * 255.0).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an NCHW array, picking source index floor(i * in / out)
    (the rule of torch's `interpolate(mode="nearest")`, which the reference pipelines use to
    bring the mask down to latent size)."""
    rows = (np.arange(height) * array.shape[2]) // height
    cols = (np.arange(width) * array.shape[3]) // width
    return array[:, :, rows][:, :, :, cols]


def _array_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValidationError(
            f"{name} array must be HxW or HxWx3 (channels last), got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValidationError(f"{name} float array must hold values in [0, 1]")
        return np.round(array * 255.0).astype(np.uint8)
    raise ValidationError(f"{name} array must be uint8 or float, got {array.dtype}")
