"""How the embedded model's training captions are phrased: a grammar per language.

A caption names a shape, its colour and the background's colour, and optionally a size, the way
people write it: either order of object and background ("蓝色背景上的红色圆形" / "红色圆形，蓝底",
"a red circle on blue" / "blue background with a red circle"), several ways to say background, on
and with, optional measure words, particles and articles, colour words with and without 色, shape
synonyms (圆/圆形/圆圈/圆盘), the size before the colour, after it or at the end, punctuation and
spacing variants, and "画..." / "a picture of ..." / "draw ..." in front.

Each top-level pattern (`ZH_PATTERNS`, `EN_PATTERNS`) is one way of arranging object and
background; the words inside are drawn independently. `held_out_phrasings` holds further patterns,
written separately from these and never used for training (tests/embedded/test_phrasing.py checks
that this grammar cannot produce them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from paddiff.plugins.embedded.grammar import Alt, expand, opt, sample

LANGUAGES = ("zh", "en")
#: Where a size word goes: nowhere, before the colour, between colour and shape, or at the end.
SIZE_SLOTS = ("none", "pre", "mid", "post")

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
ZH_SHAPE = {
    "circle": ("圆形", "圆", "圆圈", "圆盘"),
    "square": ("正方形", "方块", "方形", "正方块"),
    "triangle": ("三角形", "三角"),
    "star": ("五角星", "星星", "星形"),
    "ring": ("圆环", "环", "环形", "圆环形"),
    "cross": ("十字形", "十字", "十字架", "加号"),
}
ZH_SIZE = {"big": "大", "small": "小"}
EN_SHAPE = {
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star", "five-pointed star"),
    "ring": ("ring", "donut", "hoop"),
    "cross": ("cross", "plus sign", "plus"),
}
EN_SIZE = {"big": ("big", "large", "huge"), "small": ("small", "little", "tiny")}


@dataclass(frozen=True)
class Words:
    """The grammar's building blocks for one (shape, colours, size, size slot), in one language:
    patterns in `phrasing` and `held_out_phrasings` arrange them."""

    obj: object  # the object's noun phrase ("一个红色的大圆形", "a big red circle")
    bg: object  # the background's noun phrase ("蓝色背景", "蓝底", "blue background")
    bg_colour: object  # the background colour alone ("蓝色", "蓝", "blue")
    bg_article: object  # English: "a " / "an " / "" before the background colour
    punct: object  # between two parts of the caption
    tail: object  # the size at the end ("，大的", ", big") or ""


def zh_colour(name: str) -> Alt:
    return Alt(ZH_COLOUR[name] + "色", ZH_COLOUR[name])


def zh_words(shape: str, fg: str, bg: str, size: str, slot: str) -> Words:
    shape_name = Alt(*ZH_SHAPE[shape])
    measure, de = opt("一个"), opt("的")
    sz = ZH_SIZE[size]
    if slot == "pre":  # 大的 before the colour: "大红" would mean bright red
        obj = [measure, sz + "的", zh_colour(fg), de, shape_name]
    elif slot == "mid":
        obj = [measure, zh_colour(fg), de, sz, shape_name]
    else:
        obj = [measure, zh_colour(fg), de, shape_name]
    punct = Alt("，", ",", " ", "、", "")
    tail = [Alt("，", ","), Alt(sz + "的", sz + "号的")] if slot == "post" else ""
    background = Alt([zh_colour(bg), de, "背景"], [zh_colour(bg), "底"])
    return Words(obj, background, zh_colour(bg), "", punct, tail)


def article(word: str) -> str:
    return "an " if word[0] in "aeiou" else "a "


def en_words(shape: str, fg: str, bg: str, size: str, slot: str) -> Words:
    shape_name = Alt(*EN_SHAPE[shape])
    sizes = EN_SIZE[size]
    if slot in ("pre", "mid"):  # English puts the size before the colour
        obj = Alt(
            *([Alt(article(s), "one ", "the ", ""), s, " ", fg, " ", shape_name] for s in sizes)
        )
    else:
        obj = [Alt(article(fg), "one ", "the ", ""), fg, " ", shape_name]
    tail = [", ", Alt(*sizes)] if slot == "post" else ""
    punct = Alt(", ", " , ", " ", "; ")
    background = [bg, Alt(" background", " backdrop")]
    return Words(obj, background, bg, opt(article(bg)), punct, tail)


def words_for(language: str, shape: str, fg: str, bg: str, size: str, slot: str) -> Words:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; languages are {', '.join(LANGUAGES)}")
    if slot not in SIZE_SLOTS:
        raise ValueError(f"unknown size slot {slot!r}; slots are {', '.join(SIZE_SLOTS)}")
    return (zh_words if language == "zh" else en_words)(shape, fg, bg, size, slot)


ZH_DRAW = Alt("", "画", "请画", "画出")

#: name -> pattern (Words -> grammar node). The names are the evaluation's phrasing labels.
ZH_PATTERNS = {
    "背景上的X": lambda w: [w.bg, "上的", w.obj],
    "背景上有X": lambda w: [w.bg, "上", Alt("有", "画着", "画了", "画"), w.obj],
    "在背景上画X": lambda w: ["在", w.bg, "上", Alt("画着", "画", "有", "画了"), w.obj],
    "背景，X": lambda w: [w.bg, w.punct, w.obj],
    "背景是Y，X": lambda w: ["背景", Alt("是", "为"), w.bg_colour, w.punct, ZH_DRAW, w.obj],
    "X，背景": lambda w: [ZH_DRAW, w.obj, w.punct, w.bg],
    "X，背景是Y": lambda w: [ZH_DRAW, w.obj, w.punct, "背景", Alt("是", "为"), w.bg_colour],
    "X在背景上": lambda w: [ZH_DRAW, w.obj, "在", w.bg, "上"],
    "一张背景上X的图": lambda w: [
        Alt("一张", "一幅"),
        w.bg,
        "上",
        w.obj,
        "的",
        Alt("图", "画", "图片"),
    ],
}

EN_PICTURE = Alt("", "a picture of ", "picture of ", "an image of ", "draw ", "please draw ")
EN_ON = Alt("on", "against", "over")

EN_PATTERNS = {
    "X on Y": lambda w: [
        EN_PICTURE,
        w.obj,
        " ",
        EN_ON,
        " ",
        Alt([w.bg_article, w.bg], w.bg_colour),
    ],
    "X with Y background": lambda w: [EN_PICTURE, w.obj, " with ", w.bg_article, w.bg],
    "X, Y background": lambda w: [EN_PICTURE, w.obj, w.punct, w.bg],
    "X, the background is Y": lambda w: [
        EN_PICTURE,
        w.obj,
        w.punct,
        "the background is ",
        w.bg_colour,
    ],
    "X and Y background": lambda w: [EN_PICTURE, w.obj, " and ", w.bg_article, w.bg],
    "Y background with X": lambda w: [w.bg_article, w.bg, " with ", w.obj],
    "Y background, X": lambda w: [w.bg, w.punct, w.obj],
    "on Y background, X": lambda w: [Alt("on ", "against "), w.bg_article, w.bg, w.punct, w.obj],
}

PATTERNS = {"zh": ZH_PATTERNS, "en": EN_PATTERNS}
END = {"zh": opt("。"), "en": opt(".")}


def caption_node(patterns: dict, name: str, words: Words, language: str) -> list:
    """The whole caption: the pattern, the size at the end if its slot is "post", an end mark."""
    return [patterns[name](words), words.tail, END[language]]


def random_phrasing(
    shape: str, fg: str, bg: str, size: str, rng: np.random.Generator, language: str | None = None
) -> tuple[str, str]:
    """(pattern name, caption) drawn from the training grammar; half the captions name the size."""
    language = language or LANGUAGES[rng.integers(len(LANGUAGES))]
    patterns = PATTERNS[language]
    name = list(patterns)[rng.integers(len(patterns))]
    slot = SIZE_SLOTS[rng.integers(1, len(SIZE_SLOTS))] if rng.random() < 0.5 else "none"
    words = words_for(language, shape, fg, bg, size, slot)
    return name, sample(caption_node(patterns, name, words, language), rng)


def all_captions(shape: str, fg: str, bg: str, size: str, language: str, patterns=None) -> set:
    """Every caption the grammar (or `patterns`) can produce for these attributes."""
    patterns = patterns or PATTERNS[language]
    found = set()
    for slot in SIZE_SLOTS:
        words = words_for(language, shape, fg, bg, size, slot)
        for name in patterns:
            found.update(expand(caption_node(patterns, name, words, language)))
    return found


def terminals(node) -> set[str]:
    """Every literal string in a grammar node (for the vocabulary, without enumerating)."""
    if isinstance(node, str):
        return {node}
    return set().union(*(terminals(part) for part in node)) if node else set()
