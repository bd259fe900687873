"""Control-image makers that need no weights: canny edges, scribble, threshold, invert, none.

Each turns a user's picture into the kind of image a control net was trained on: white marks
(edges, strokes) on black, RGB, the size of the input. They are written with NumPy and Pillow
only, so they work wherever paddiff does.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from paddiff.interfaces import Preprocessor
from PIL import Image


class _Options(Preprocessor):
    """Options with defaults; an unknown option is an error naming the known ones."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)} for the {self.name!r} preprocessor; "
                f"its options are: {known}"
            )
        self.options = {**self.defaults, **options}

    @classmethod
    def from_config(cls, config: dict) -> _Options:
        return cls(**dict(config or {}))


def _gray(image: Image.Image) -> np.ndarray:
    """Luma of an RGB picture as float32 0..255 (ITU-R 601, as Pillow's "L" mode)."""
    return np.asarray(image.convert("L"), dtype=np.float32)


def _rgb(mask: np.ndarray) -> Image.Image:
    """A boolean mask as white-on-black RGB."""
    values = np.where(mask, 255, 0).astype(np.uint8)
    return Image.fromarray(np.stack([values] * 3, axis=-1), "RGB")


class NoPreprocessor(_Options):
    """The user's own control image (an edge map, a pose drawing, ...), used as it is."""

    name = "none"

    def __call__(self, image):
        return image.convert("RGB")


class Invert(_Options):
    """Black lines on white (a drawing on paper) become white lines on black."""

    name = "invert"

    def __call__(self, image):
        return Image.fromarray(255 - np.asarray(image.convert("RGB")), "RGB")


class Threshold(_Options):
    """White where the picture is brighter than `threshold` (0-255), black elsewhere: a
    silhouette from a light shape on a dark ground."""

    name = "threshold"
    defaults: ClassVar[dict] = {"threshold": 128}

    def __call__(self, image):
        return _rgb(_gray(image) > float(self.options["threshold"]))


class Scribble(_Options):
    """Dark strokes on a light ground (a sketch) become white strokes on black, thickened by
    `thickness` pixels on each side (scribble control nets were trained on bold strokes)."""

    name = "scribble"
    defaults: ClassVar[dict] = {"threshold": 128, "thickness": 1}

    def __call__(self, image):
        strokes = _gray(image) < float(self.options["threshold"])
        return _rgb(_dilate(strokes, int(self.options["thickness"])))


class Canny(_Options):
    """Canny's edge detector (1986) as ControlNet's canny annotator runs it (OpenCV's
    `Canny(image, 100, 200)`): 3x3 Sobel gradients of the grey image with the L1 magnitude
    |gx| + |gy|, thinning to local maxima along the gradient, and hysteresis: pixels above
    `high_threshold` are edges, and so are pixels above `low_threshold` connected to them.
    `blur` (a Gaussian sigma in pixels, 0 = none) smooths noisy photos first."""

    name = "canny"
    defaults: ClassVar[dict] = {"low_threshold": 100, "high_threshold": 200, "blur": 0.0}

    def __call__(self, image):
        low, high = float(self.options["low_threshold"]), float(self.options["high_threshold"])
        if not 0 <= low <= high:
            raise ValueError(
                f"canny thresholds must satisfy 0 <= low_threshold <= high_threshold, got "
                f"{low} and {high}"
            )
        gray = _gray(image)
        if float(self.options["blur"]) > 0:
            gray = _gaussian_blur(gray, float(self.options["blur"]))
        gx, gy = _sobel(gray)
        magnitude = np.abs(gx) + np.abs(gy)
        thin = magnitude * _local_maxima(magnitude, gx, gy)
        return _rgb(_hysteresis(thin >= high, thin > low))


def _sobel(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical 3x3 Sobel derivatives, borders reflected (OpenCV's default)."""
    p = np.pad(gray, 1, mode="reflect")
    smooth_rows = p[:-2] + 2 * p[1:-1] + p[2:]  # [1 2 1] down the columns
    smooth_cols = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # [1 2 1] along the rows
    gx = smooth_rows[:, 2:] - smooth_rows[:, :-2]
    gy = smooth_cols[2:] - smooth_cols[:-2]
    return gx, gy


def _local_maxima(magnitude, gx, gy) -> np.ndarray:
    """Non-maximum suppression: keep a pixel when it is at least as large as its two neighbours
    along the gradient direction (rounded to 0, 45, 90 or 135 degrees)."""
    m = np.pad(magnitude, 1)
    h, w = magnitude.shape

    def shifted(dy, dx):
        return m[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    angle = (np.degrees(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = np.round(angle / 45.0).astype(int) % 4  # 0: horizontal gradient, 2: vertical
    # neighbour offsets (dy, dx) along the gradient for each sector; rows grow downwards
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    keep = np.zeros_like(magnitude, dtype=bool)
    for s, (dy, dx) in offsets.items():
        here = sector == s
        ahead, behind = shifted(dy, dx), shifted(-dy, -dx)
        keep |= here & (magnitude > ahead) & (magnitude >= behind)
    return keep & (magnitude > 0)


def _hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Weak pixels 8-connected (through weak pixels) to a strong one, plus the strong ones."""
    edges = strong.copy()
    while True:
        grown = _dilate(edges, 1) & weak | edges
        if np.array_equal(grown, edges):
            return edges
        edges = grown


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2 radius + 1)^2 square."""
    out = mask.copy()
    if radius <= 0:
        return out
    h, w = mask.shape
    p = np.pad(mask, radius)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= p[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def _gaussian_blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    p = np.pad(gray, radius, mode="reflect")
    rows = sum(k * p[i : i + gray.shape[0]] for i, k in enumerate(kernel))
    return sum(k * rows[:, i : i + gray.shape[1]] for i, k in enumerate(kernel))
