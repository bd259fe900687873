"""CLIP image preprocessing, as CLIPImageProcessor does it (the "feature_extractor" of SD).

Steps: convert to RGB (transparency composited onto white), resize so the shortest side is
`shortest_edge` with PIL's bicubic filter, center-crop, rescale to [0, 1], normalise with CLIP's
mean and std. Resizing goes through PIL on uint8 pixels, like the reference, so results agree to
float32 rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipImageSettings:
    shortest_edge: int = 224
    crop_height: int = 224
    crop_width: int = 224
    resample: int = 3  # PIL.Image.BICUBIC
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_json(cls, path: str | Path) -> ClipImageSettings:
        """Read a preprocessor_config.json; sizes may be ints (older files) or dicts."""
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        settings = cls()
        size = values.get("size", 224)
        if isinstance(size, dict):
            if "shortest_edge" not in size:
                raise ValueError(f"{path}: only 'shortest_edge' resizing is supported, got {size}")
            size = size["shortest_edge"]
        crop = values.get("crop_size", size)
        crop_h, crop_w = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
        settings.shortest_edge, settings.crop_height, settings.crop_width = size, crop_h, crop_w
        for key in ("resample", "rescale_factor", "do_resize", "do_center_crop", "do_rescale"):
            if key in values:
                setattr(settings, key, values[key])
        settings.do_normalize = values.get("do_normalize", True)
        settings.image_mean = tuple(values.get("image_mean", CLIP_MEAN))
        settings.image_std = tuple(values.get("image_std", CLIP_STD))
        return settings


def to_rgb(image: Image.Image) -> Image.Image:
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def resize_shortest_edge(image: Image.Image, size: int, resample: int) -> Image.Image:
    width, height = image.size
    short, long = sorted((width, height))
    new_long = int(size * long / short)  # truncation, as the reference does
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, resample=resample)


def preprocess(images: list[Image.Image], settings: ClipImageSettings) -> np.ndarray:
    """Pixel values (N, 3, crop_height, crop_width), float32."""
    out = []
    for image in images:
        image = to_rgb(image)
        if settings.do_resize:
            image = resize_shortest_edge(image, settings.shortest_edge, settings.resample)
        pixels = np.asarray(image).transpose(2, 0, 1)  # HWC uint8 -> CHW
        if settings.do_center_crop:
            pixels = center_crop(pixels, settings.crop_height, settings.crop_width)
        if settings.do_rescale:  # float64 first, then float32, like the reference
            pixels = (pixels.astype(np.float64) * settings.rescale_factor).astype(np.float32)
        pixels = pixels.astype(np.float32)
        if settings.do_normalize:
            mean = np.asarray(settings.image_mean, np.float32)[:, None, None]
            std = np.asarray(settings.image_std, np.float32)[:, None, None]
            pixels = (pixels - mean) / std
        out.append(pixels)
    return np.stack(out)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    _, h, w = pixels.shape
    if height > h or width > w:
        raise ValueError(f"cannot crop {height}x{width} from a {h}x{w} image")
    top, left = (h - height) // 2, (w - width) // 2
    return pixels[:, top : top + height, left : left + width]


def array_to_pil(images: np.ndarray) -> list[Image.Image]:
    """NCHW float images in [-1, 1] -> RGB PIL images, rounded as diffusers' numpy_to_pil."""
    pixels = np.clip(images / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    return [Image.fromarray((p * 255).round().astype(np.uint8)) for p in pixels]
