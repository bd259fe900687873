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

import re
from dataclasses import dataclass

import numpy as np
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

ZH_COLOUR = {
    "red": "红",
    "orange": "橙",
    "yellow": "黄",
    "green": "绿",
    "blue": "蓝",
    "purple": "紫",
    "white": "白",
    "black": "黑",
}
# Two names per shape: the full noun and the short, colloquial one.
ZH_SHAPE = {
    "circle": ("圆形", "圆"),
    "square": ("正方形", "方块"),
    "triangle": ("三角形", "三角"),
    "star": ("五角星", "星星"),
    "ring": ("圆环", "环"),
    "cross": ("十字形", "十字"),
    "heart": ("心形", "爱心"),
}
ZH_SIZE = {"big": "大", "small": "小"}
EN_SHAPE = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle", "triangle"),
    "star": ("star", "star"),
    "ring": ("ring", "donut"),
    "cross": ("cross", "plus sign"),
    "heart": ("heart", "heart"),
}
EN_SIZE = {"big": ("big", "large"), "small": ("small", "little")}

# Placeholders: {fg}/{bg} colour words ("红色" or "red"), {fgs}/{bgs} one-character Chinese colours,
# {shape} a shape name, {sz} a size word or "", {szde} "大的"/"小的" or "" (Chinese).
# "大" goes after the colour in Chinese ("红色的大圆形"): "大红" before a colour means "bright red".
ZH_TEMPLATES = (
    "{bg}背景上的一个{szde}{fg}{shape}",
    "{fg}的{sz}{shape}，{bgs}底",
    "一个{szde}{fg}{shape}，背景是{bg}",
    "{bgs}底上有一个{fg}的{sz}{shape}",
    "{fg}{sz}{shape}，{bg}背景",
    "在{bg}的背景上画着一个{szde}{fg}{shape}",
)
EN_TEMPLATES = (
    "{a} {sz} {fg} {shape} on {a_bg} {bg} background",
    "{sz} {fg} {shape}, {bg} backdrop",
    "{a} {sz} {fg} {shape} against {a_bg} {bg} background",
    "{bg} background with {a} {sz} {fg} {shape}",
    "{sz} {fg} {shape} on {bg}",
    "a picture of {a} {sz} {fg} {shape} on {bg}",
)
LANGUAGES = ("zh", "en")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(
    attrs: Attributes, language: str, template: int, shape_name: int = 0, with_size: bool = True
) -> str:
    """The caption for attrs from one template, one of the two shape names, with/without size."""
    if language == "zh":
        sz = ZH_SIZE[attrs.size] if with_size else ""
        text = ZH_TEMPLATES[template].format(
            fg=ZH_COLOUR[attrs.fg] + "色",
            bg=ZH_COLOUR[attrs.bg] + "色",
            bgs=ZH_COLOUR[attrs.bg],
            shape=ZH_SHAPE[attrs.shape][shape_name],
            sz=sz,
            szde=sz + "的" if sz else "",
        )
        return text
    if language == "en":
        sz = EN_SIZE[attrs.size][shape_name] if with_size else ""
        words = EN_TEMPLATES[template].split()
        text = " ".join(w for w in words if w != "{sz}" or sz)  # drop the slot, not a blank
        first = sz or attrs.fg
        return text.format(
            a=_article(first),
            a_bg=_article(attrs.bg),
            sz=sz,
            fg=attrs.fg,
            bg=attrs.bg,
            shape=EN_SHAPE[attrs.shape][shape_name],
        )
    raise ValueError(f"unknown language {language!r}; languages are {', '.join(LANGUAGES)}")


def random_caption(attrs: Attributes, rng: np.random.Generator, language: str | None = None) -> str:
    language = language or LANGUAGES[rng.integers(2)]
    templates = ZH_TEMPLATES if language == "zh" else EN_TEMPLATES
    return caption(
        attrs,
        language,
        template=int(rng.integers(len(templates))),
        shape_name=int(rng.integers(2)),
        with_size=bool(rng.integers(2)),
    )


def _alternatives(names) -> str:
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


def _template_regex(template: str, language: str) -> re.Pattern:
    if language == "zh":
        colours, shapes = ZH_COLOUR, ZH_SHAPE
        slots = {
            "fg": f"(?P<fg>{_alternatives(c + '色' for c in colours.values())})",
            "bg": f"(?P<bg>{_alternatives(c + '色' for c in colours.values())})",
            "bgs": f"(?P<bg>{_alternatives(colours.values())})",
            "shape": f"(?P<shape>{_alternatives(n for pair in shapes.values() for n in pair)})",
            "sz": f"(?P<size>{_alternatives(ZH_SIZE.values())})?",
            "szde": f"(?:(?P<size>{_alternatives(ZH_SIZE.values())})的)?",
        }
        pattern = re.escape(template)
        for name, regex in slots.items():
            pattern = pattern.replace(re.escape("{" + name + "}"), regex)
        return re.compile(pattern)
    slots = {
        "a": "an?",
        "a_bg": "an?",
        "sz": f"(?:(?P<size>{_alternatives(w for p in EN_SIZE.values() for w in p)}) )?",
        "fg": f"(?P<fg>{_alternatives(COLOURS)})",
        "bg": f"(?P<bg>{_alternatives(COLOURS)})",
        "shape": f"(?P<shape>{_alternatives(n for p in EN_SHAPE.values() for n in p)})",
    }
    # The size slot swallows its trailing space, so the caption without a size word matches too.
    pattern = re.escape(template).replace(re.escape("{sz} "), re.escape("{sz}"))
    for name, regex in slots.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), regex)
    return re.compile(pattern)


def parse_caption(text: str) -> dict:
    """The attributes a caption states: {"shape", "fg", "bg", "size" (None if unstated), "language"}.

    Raises ValueError for text that no template produces.
    """
    for language, templates in (("zh", ZH_TEMPLATES), ("en", EN_TEMPLATES)):
        for template in templates:
            match = _template_regex(template, language).fullmatch(text)
            if match:
                return _attributes_from_words(match.groupdict(), language)
    raise ValueError(f"not a caption of the embedded dataset: {text!r}")


def _attributes_from_words(words: dict, language: str) -> dict:
    if language == "zh":
        colour = {v: k for k, v in ZH_COLOUR.items()}
        shape = {n: k for k, pair in ZH_SHAPE.items() for n in pair}
        size = {v: k for k, v in ZH_SIZE.items()}
        fg, bg = colour[words["fg"][0]], colour[words["bg"][0]]
    else:
        shape = {n: k for k, pair in EN_SHAPE.items() for n in pair}
        size = {w: k for k, pair in EN_SIZE.items() for w in pair}
        fg, bg = words["fg"], words["bg"]
    return {
        "shape": shape[words["shape"]],
        "fg": fg,
        "bg": bg,
        "size": size[words["size"]] if words.get("size") else None,
        "language": language,
    }


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


def caption_vocabulary() -> tuple[list[str], list[str]]:
    """(Chinese characters, English words and punctuation) that any caption can contain."""
    texts = []
    for shape, fg, bg in all_combinations():
        for size in SIZES:
            attrs = Attributes(shape, fg, bg, size)
            for language, templates in (("zh", ZH_TEMPLATES), ("en", EN_TEMPLATES)):
                for t in range(len(templates)):
                    for name in range(2):
                        for with_size in (True, False):
                            texts.append(caption(attrs, language, t, name, with_size))
    chars = sorted({ch for text in texts for ch in text if "\u4e00" <= ch <= "\u9fff"})
    words = sorted({w for text in texts for w in re.findall(r"[a-z]+|[^\sa-z\u4e00-\u9fff]", text)})
    return chars, words
