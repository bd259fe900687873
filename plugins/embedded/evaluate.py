"""Measures whether generated images show what their prompts ask for: shape, colour, background.

This evaluator shares no code and no weights with the generator or with the dataset's renderer:
it has its own reference colour table (canonical RGB values, not the renderer's palette) and reads
images with plain NumPy. Only the attribute *names* are common. The shape reader is a small
scikit-learn classifier fitted on procedural renderings (passed in by the caller) and scored on
renderings it was not fitted on.

    background = nearest reference colour to the median of the image's border pixels
    foreground = nearest reference colour to the median of the pixels far from the background
    shape      = classifier on the foreground mask, cropped to its bounding box and resized

An image scores 1 when all three are right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The evaluator's own idea of each colour (canonical sRGB values), deliberately not the
#: renderer's palette: nearest-colour reading must work for any reasonable rendition.
REFERENCE_RGB = {
    "red": (230, 0, 0),
    "orange": (255, 140, 0),
    "yellow": (255, 230, 0),
    "green": (0, 170, 40),
    "blue": (0, 60, 230),
    "purple": (140, 30, 180),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
SHAPE_NAMES = ("circle", "square", "triangle", "star", "ring", "cross", "heart")
MASK_SIZE = 24  # the foreground mask is resized to this square before classification
BORDER = 2  # pixels of the image frame read as background
FOREGROUND_DISTANCE = 40.0  # RGB distance from the background that may be foreground
MIN_FOREGROUND_PIXELS = 12


def nearest_colour(rgb) -> str:
    names = list(REFERENCE_RGB)
    table = np.array([REFERENCE_RGB[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - np.asarray(rgb, np.float32)) ** 2).sum(axis=1)))]


@dataclass
class Reading:
    """What the evaluator sees in one image."""

    bg: str
    fg: str | None
    mask: np.ndarray  # bool (H, W): pixels taken as foreground
    soft: np.ndarray | None = None  # float (H, W) in [0, 1]: how far along from bg to fg colour

    @property
    def has_foreground(self) -> bool:
        return self.fg is not None


def read_colours(image: np.ndarray) -> Reading:
    """Background and foreground colour of a uint8 (H, W, 3) image, and the foreground mask.

    The mask is every pixel nearer the foreground colour than the background one (projection on
    the line between them past half way), so a soft edge is split where a sharp one would be,
    whatever the contrast between the two colours.
    """
    pixels = image.astype(np.float32)
    frame = np.ones(image.shape[:2], bool)
    frame[BORDER:-BORDER, BORDER:-BORDER] = False
    bg_rgb = np.median(pixels[frame], axis=0)
    distance = np.sqrt(((pixels - bg_rgb) ** 2).sum(axis=-1))
    candidates = distance > FOREGROUND_DISTANCE
    if candidates.sum() < MIN_FOREGROUND_PIXELS:
        return Reading(nearest_colour(bg_rgb), None, candidates)
    # The core of the shape: the farthest quarter of the candidate pixels, away from soft edges.
    core = candidates & (distance >= np.percentile(distance[candidates], 75))
    fg_rgb = np.median(pixels[core], axis=0)
    axis = fg_rgb - bg_rgb
    along = ((pixels - bg_rgb) @ axis) / max(float(axis @ axis), 1e-6)
    soft = np.clip(along, 0.0, 1.0)
    return Reading(nearest_colour(bg_rgb), nearest_colour(fg_rgb), along > 0.5, soft)


def mask_features(mask: np.ndarray) -> np.ndarray:
    """The mask cropped to a square around its bounding box (aspect kept), resized, flattened.
    A soft mask (values in [0, 1]) keeps sub-pixel edge positions that thresholding would lose."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys) == 0:
        return np.zeros(MASK_SIZE * MASK_SIZE, np.float32)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + 0.5
    # Sample the mask on a MASK_SIZE grid over the square (nearest neighbour, 4x4 supersampled).
    steps = (np.arange(MASK_SIZE * 4) + 0.5) / (MASK_SIZE * 4) * 2 - 1
    rows = np.clip(np.round(cy + steps * half).astype(int), -1, mask.shape[0])
    cols = np.clip(np.round(cx + steps * half).astype(int), -1, mask.shape[1])
    padded = np.pad(mask.astype(np.float32), 1)  # index -1 and H land on the zero padding
    grid = padded[rows[:, None] + 1, cols[None, :] + 1].astype(np.float32)
    return grid.reshape(MASK_SIZE, 4, MASK_SIZE, 4).mean(axis=(1, 3)).ravel()


def shape_mask(reading: Reading) -> np.ndarray:
    return reading.soft if reading.soft is not None else reading.mask


def _box_blur(x: np.ndarray, size: int) -> np.ndarray:
    pad = size // 2
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    return sum(padded[i : i + h, j : j + w] for i in range(size) for j in range(size)) / size**2


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft edges of varying width and pixel noise, so the classifier does not rely on the
    renderer's crisp edges (a generated image is never that sharp)."""
    x = image.astype(np.float32)
    blur = rng.choice([1, 3, 3, 5])
    if blur > 1:
        x = _box_blur(x, int(blur))
    x = x + rng.normal(0, rng.uniform(0, 12), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


class ShapeClassifier:
    """A support-vector classifier (RBF kernel, scikit-learn) on `mask_features`."""

    def __init__(self, seed: int = 0):
        from sklearn.svm import SVC

        self.seed = seed
        self.model = SVC(C=10.0, gamma="scale")

    def fit(self, images: np.ndarray, shapes: list[str]) -> ShapeClassifier:
        rng = np.random.default_rng(self.seed)
        features = [mask_features(shape_mask(read_colours(_augment(im, rng)))) for im in images]
        self.model.fit(np.stack(features), list(shapes))
        return self

    def predict(self, images: np.ndarray) -> list[str]:
        features = np.stack([mask_features(shape_mask(read_colours(im))) for im in images])
        return list(self.model.predict(features))

    def accuracy(self, images: np.ndarray, shapes: list[str]) -> float:
        return float(np.mean([p == s for p, s in zip(self.predict(images), shapes, strict=True)]))


def score(image: np.ndarray, shape: str, fg: str, bg: str, classifier: ShapeClassifier) -> dict:
    """Which of the requested attributes the image shows (booleans) and what was read."""
    reading = read_colours(image)
    read_shape = classifier.predict(image[None])[0] if reading.has_foreground else None
    result = {
        "read": {"shape": read_shape, "fg": reading.fg, "bg": reading.bg},
        "shape_ok": read_shape == shape,
        "fg_ok": reading.fg == fg,
        "bg_ok": reading.bg == bg,
    }
    result["all_ok"] = result["shape_ok"] and result["fg_ok"] and result["bg_ok"]
    return result
