"""The embedded model's training data: coloured shapes drawn in code, with captions in two languages.

Nothing is downloaded. An example is a (shape, foreground colour, background colour, size) choice,
rendered at 64x64 with a little position jitter, plus captions in Chinese and English written from
several phrasings per language ("蓝色背景上的一个红色圆形", "红色的圆，蓝底", "a red circle on a blue
background", "red circle, blue backdrop", ...).

Foreground and background share one palette of eight colours and are never equal, which gives
6 shapes x 8 x 7 = 336 (shape, foreground, background) combinations. `HELD_OUT` removes about a
tenth of them from training entirely (see `is_held_out`), chosen so that every shape, colour and
background, and every pair of them, is still seen in training: the evaluation then asks whether the
model composes attributes it has only seen apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from paddiff.plugins.embedded import phrasing
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and downsample with a box filter: cheap anti-aliasing

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
#: Shapes the renderer and the captions know but the embedded model never saw: what a LoRA is
#: taught in docs/training.md. Kept out of SHAPES, so the model's training data stays the same.
NEW_SHAPES = ("heart",)

#: name -> RGB used for drawing (the evaluator keeps its own reference table on purpose).
PALETTE = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 35),
    "green": (40, 160, 60),
    "blue": (35, 75, 210),
    "purple": (135, 50, 175),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
COLOURS = tuple(PALETTE)
SIZES = ("big", "small")

# Shape radius (centre to the farthest drawn point) as a fraction of the image side, per size.
RADIUS = {"big": (0.30, 0.36), "small": (0.19, 0.23)}
# Largest centre offset, as a fraction of the side (2 and 3 pixels at 64x64). Kept small on
# purpose: with the earlier 6 and 10 pixels, the average picture behind a caption was a blurred
# disc whatever the shape, and after 5,000 steps the model drew the right colours but no shapes.
JITTER = {"big": 0.03, "small": 0.05}


@dataclass(frozen=True)
class Attributes:
    shape: str
    fg: str
    bg: str
    size: str = "big"

    @property
    def combination(self) -> tuple[str, str, str]:
        return (self.shape, self.fg, self.bg)


def all_combinations() -> list[tuple[str, str, str]]:
    return [(s, f, b) for s in SHAPES for f in COLOURS for b in COLOURS if f != b]


def is_held_out(shape: str, fg: str, bg: str) -> bool:
    """The fixed held-out rule: (s + 3f + 7b + 3) mod 10 == 0 on the indices in SHAPES and COLOURS.

    3 and 7 are coprime to 10, so with any two attributes fixed, the third's index values give
    distinct residues: at most one combination per (shape, fg), (shape, bg) or (fg, bg) pair is
    held out, and every pair is still seen in training. The offset 3 keeps the diagonal fg == bg
    (where 3f + 7b = 10f) off the rule for every shape, so each shape loses about 6 combinations.
    """
    s, f, b = SHAPES.index(shape), COLOURS.index(fg), COLOURS.index(bg)
    return (s + 3 * f + 7 * b + 3) % 10 == 0


HELD_OUT = tuple(c for c in all_combinations() if is_held_out(*c))
SEEN = tuple(c for c in all_combinations() if not is_held_out(*c))


# -- drawing ---------------------------------------------------------------------------------


def _star_points(cx, cy, r, inner=0.45, points=5):
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, r, r * inner)
    return list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles), strict=True))


def _heart_points(cx, cy, r, n=96):
    """The classic heart curve x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t,
    scaled so its farthest point from its box centre is about r, point down."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    y = y - (y.max() + y.min()) / 2  # centre the box vertically
    scale = r / 17.0
    return list(zip(cx + scale * x, cy + scale * y, strict=True))


def _draw_shape(draw: ImageDraw.ImageDraw, shape, cx, cy, r, fg, bg):
    if shape == "heart":
        draw.polygon(_heart_points(cx, cy, r), fill=fg)
    elif shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        inner = 0.55 * r
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=bg)
    elif shape == "square":
        h = 0.8 * r  # a little inside the circle of radius r, so it looks as big as the others
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fg)
    elif shape == "triangle":  # equilateral, point up, centred on its circumcentre
        draw.polygon(
            [(cx, cy - r), (cx - r * 0.866, cy + r / 2), (cx + r * 0.866, cy + r / 2)], fill=fg
        )
    elif shape == "star":
        draw.polygon(_star_points(cx, cy, r), fill=fg)
    elif shape == "cross":
        arm, half = r * 0.92, r * 0.3
        draw.rectangle([cx - arm, cy - half, cx + arm, cy + half], fill=fg)
        draw.rectangle([cx - half, cy - arm, cx + half, cy + arm], fill=fg)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes are {', '.join(SHAPES)}")


def render(attrs: Attributes, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image, uint8 (size, size, 3), with the shape's radius and position drawn from rng."""
    if attrs.fg == attrs.bg:
        raise ValueError(f"foreground and background are both {attrs.fg!r}")
    big = size * SUPERSAMPLE
    lo, hi = RADIUS[attrs.size]
    r = rng.uniform(lo, hi) * big
    cx, cy = big / 2 + rng.uniform(-1, 1, size=2) * JITTER[attrs.size] * big
    fg, bg = PALETTE[attrs.fg], PALETTE[attrs.bg]
    canvas = Image.new("RGB", (big, big), bg)
    _draw_shape(ImageDraw.Draw(canvas), attrs.shape, cx, cy, r, fg, bg)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX))


# -- captions --------------------------------------------------------------------------------
# The phrasing grammar lives in `phrasing`; the caption parser and vocabulary in `lexicon`.

LANGUAGES = phrasing.LANGUAGES


def random_caption(attrs: Attributes, rng: np.random.Generator, language: str | None = None) -> str:
    """A caption for attrs from the training grammar, in `language` or a random one."""
    return phrasing.random_phrasing(*attrs.combination, attrs.size, rng, language)[1]


def parse_caption(text: str) -> dict:
    """The attributes a caption states (see `lexicon.parse`); ValueError if it states none."""
    from paddiff.plugins.embedded import lexicon

    return lexicon.parse(text)


# -- sampling --------------------------------------------------------------------------------


def sample_attributes(rng: np.random.Generator, split: str = "train") -> Attributes:
    """Uniform over the combinations of a split ("train": seen, "held_out"), and over sizes."""
    combos = {"train": SEEN, "held_out": HELD_OUT}[split]
    shape, fg, bg = combos[rng.integers(len(combos))]
    return Attributes(shape, fg, bg, SIZES[rng.integers(len(SIZES))])


def example(seed: int, index: int, split: str = "train") -> tuple[Attributes, np.ndarray]:
    """Example `index` of the stream for `seed`: the same (attributes, image) on every run."""
    rng = np.random.default_rng([seed, index])
    attrs = sample_attributes(rng, split)
    return attrs, render(attrs, rng)


def make_images(seed: int, count: int, split: str = "train"):
    """`count` examples as (list of Attributes, uint8 array (count, 64, 64, 3))."""
    pairs = [example(seed, i, split) for i in range(count)]
    return [a for a, _ in pairs], np.stack([im for _, im in pairs])


CALIBRATION_SEED = 777001  # not a training seed, nor an evaluation one (777 + 100 x draw)


def calibration_prompts(count: int = 32, seed: int = CALIBRATION_SEED) -> list[str]:
    """Training-grammar captions of seen combinations, Chinese and English in turn: the model
    folder's calibration_prompts.txt, which `paddiff quantize` calibrates on by default."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(count):
        attrs = sample_attributes(rng, "train")
        prompts.append(random_caption(attrs, rng, LANGUAGES[i % len(LANGUAGES)]))
    return prompts


def caption_vocabulary() -> tuple[list[str], list[str]]:
    """(Chinese characters, English words and punctuation) that any training caption can contain."""
    from paddiff.plugins.embedded import lexicon

    return lexicon.caption_vocabulary()
