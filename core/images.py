"""Conversions between user images (files, PIL, NumPy) and the arrays the VAE takes and returns.

Pixel arrays at the VAE are NCHW float32 in [-1, 1]; masks are N1HW with 1 where the image is to
be repainted and 0 where it is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paddiff.validation import ValidationError


def load_image(source, name: str = "image"):
    """An 8-bit RGB PIL image from a file path, a PIL image or a NumPy array: the one rule for
    every entry point (the pipeline, the PaddleHub module, `paddiff.serving`).

    - NumPy arrays are HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), channels last. uint8 is
      0-255; uint16 is 0-65535 (16-bit PNG or TIFF data), brought to 8 bits as v / 257; bool is
      black / white (a mask); floats must be finite and in [0, 1]. Anything else is refused
      rather than guessed: a float array in [-1, 1] (the VAE's range) could also be a dark
      [0, 1] image that happens to be non-negative, so only the caller knows; pass (x + 1) / 2.
    - Images of any mode are made RGB: palettes are expanded, grey is repeated in the three
      channels, 16-bit grey ("I;16", "I") is scaled as above, 32-bit float ("F") follows the
      float rule, and alpha is dropped, keeping the colour under it (as diffusers' load_image
      does, so inputs match the reference pipelines).

    Unreadable files, bad arrays and other types raise `ValidationError` naming `name`.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, Path)):
        try:
            with Image.open(source) as image:
                image.load()
        except FileNotFoundError:
            raise ValidationError(f"{name} file not found: {source}") from None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ValidationError(f"cannot read {name} file {source}: {exc}") from None
        return _to_rgb(image, name)
    if isinstance(source, Image.Image):
        return _to_rgb(source, name)
    if isinstance(source, np.ndarray):
        return _to_rgb(Image.fromarray(_array_to_uint8(source, name)), name)
    raise ValidationError(
        f"{name} must be a file path, a PIL image or a NumPy array, got {type(source).__name__}"
    )


def _to_rgb(image, name: str):
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        # PIL's own conversion clips 16-bit values at 255 instead of scaling them, so these go
        # through the array rules: "I;16*" and "I" (how PIL opens 16-bit grey) as uint16.
        values = np.asarray(image)
        if image.mode != "F":
            if values.size and not 0 <= values.min() <= values.max() <= 65535:
                raise ValidationError(f"{name} of mode {image.mode} has values outside 0-65535")
            values = values.astype(np.uint16)
        image = Image.fromarray(_array_to_uint8(values, name))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when a palette with transparency goes to RGB
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ValidationError(f"cannot convert {name} of mode {image.mode} to RGB: {exc}") from None


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
    """HxW or HxWx{3,4} uint8 by the rules of `load_image`."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValidationError(
            f"{name} array must be HxW, HxWx3 or HxWx4 (channels last), got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not (
            np.isfinite(array).all() and 0.0 <= array.min() <= array.max() <= 1.0
        ):
            low, high = np.nanmin(array), np.nanmax(array)
            raise ValidationError(
                f"{name} float array must hold finite values in [0, 1], got values in "
                f"[{low:.3g}, {high:.3g}]; for an array in [-1, 1], pass (x + 1) / 2"
            )
        return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise ValidationError(
        f"{name} array must be uint8, uint16, bool or float in [0, 1], got {array.dtype}"
    )
