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
SHAPE_NAMES = ("circle", "square", "triangle", "star", "ring", "cross")
MASK_SIZE = 24  # the foreground mask is resized to this square before classification
BORDER = 2  # pixels of the image frame read as background
FOREGROUND_DISTANCE = 80.0  # RGB distance from the background colour that counts as foreground
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

    @property
    def has_foreground(self) -> bool:
        return self.fg is not None


def read_colours(image: np.ndarray) -> Reading:
    """Background and foreground colour of a uint8 (H, W, 3) image."""
    pixels = image.astype(np.float32)
    frame = np.ones(image.shape[:2], bool)
    frame[BORDER:-BORDER, BORDER:-BORDER] = False
    bg_rgb = np.median(pixels[frame], axis=0)
    distance = np.sqrt(((pixels - bg_rgb) ** 2).sum(axis=-1))
    mask = distance > FOREGROUND_DISTANCE
    if mask.sum() < MIN_FOREGROUND_PIXELS:
        return Reading(nearest_colour(bg_rgb), None, mask)
    # The core of the shape: the farther half of the foreground pixels, away from blended edges.
    core = mask & (distance >= np.median(distance[mask]))
    return Reading(nearest_colour(bg_rgb), nearest_colour(np.median(pixels[core], axis=0)), mask)


def mask_features(mask: np.ndarray) -> np.ndarray:
    """The mask cropped to a square around its bounding box (aspect kept), resized, flattened."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros(MASK_SIZE * MASK_SIZE, np.float32)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + 0.5
    # Sample the mask on a MASK_SIZE grid over the square (nearest neighbour, 4x4 supersampled).
    steps = (np.arange(MASK_SIZE * 4) + 0.5) / (MASK_SIZE * 4) * 2 - 1
    rows = np.clip(np.round(cy + steps * half).astype(int), -1, mask.shape[0])
    cols = np.clip(np.round(cx + steps * half).astype(int), -1, mask.shape[1])
    padded = np.pad(mask, 1)  # index -1 and H land on the zero padding
    grid = padded[rows[:, None] + 1, cols[None, :] + 1].astype(np.float32)
    return grid.reshape(MASK_SIZE, 4, MASK_SIZE, 4).mean(axis=(1, 3)).ravel()


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft edges and pixel noise, so the classifier does not rely on crisp renderer edges."""
    x = image.astype(np.float32)
    if rng.random() < 0.5:  # a 3x3 box blur
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
        x = sum(padded[i : i + x.shape[0], j : j + x.shape[1]] for i in range(3) for j in range(3))
        x = x / 9
    x = x + rng.normal(0, rng.uniform(0, 12), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


class ShapeClassifier:
    """A multinomial logistic regression on `mask_features` (scikit-learn)."""

    def __init__(self, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        self.seed = seed
        self.model = LogisticRegression(C=1.0, max_iter=2000)

    def fit(self, images: np.ndarray, shapes: list[str]) -> ShapeClassifier:
        rng = np.random.default_rng(self.seed)
        features = [mask_features(read_colours(_augment(im, rng)).mask) for im in images]
        self.model.fit(np.stack(features), list(shapes))
        return self

    def predict(self, images: np.ndarray) -> list[str]:
        features = np.stack([mask_features(read_colours(im).mask) for im in images])
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
