"""Control images as the control net reads them, prepared as diffusers' pipelines do."""

from __future__ import annotations

import numpy as np
from paddiff.images import load_image


def prepare_control_image(image, width: int, height: int) -> np.ndarray:
    """(1, 3, height, width) float32 in [0, 1] (not [-1, 1]: control nets were trained on
    0..1 hint images). A picture of another size is resized with Lanczos, as diffusers'
    control-image processor does for PIL images."""
    from PIL import Image

    picture = load_image(image, "control image")
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(picture, dtype=np.float32) / 255.0
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])
