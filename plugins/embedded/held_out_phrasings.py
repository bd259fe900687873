"""Phrasings the embedded model is evaluated on but never trained on.

Written separately from the training grammar (`phrasing`) and imported only by the evaluation:
each pattern arranges the training grammar's own words (the same noun phrases, colour words and
punctuation) in a way the training patterns do not, so that a model that learnt what the words
mean, and not where they stand, still reads them. Every character and word here is in the
training vocabulary; tests/embedded/test_phrasing.py checks that, and that no caption these
patterns produce is one the training grammar can produce (punctuation and spacing ignored).
"""

from __future__ import annotations

import numpy as np
from paddiff.plugins.embedded.grammar import Alt, sample
from paddiff.plugins.embedded.phrasing import LANGUAGES, SIZE_SLOTS, caption_node, words_for

ZH_HELD_OUT = {
    "X画在背景上": lambda w: [w.obj, "画在", w.bg, "上"],
    "有X，背景是Y": lambda w: ["有", w.obj, w.punct, "背景是", w.bg_colour],
    "X的背景是Y": lambda w: [w.obj, "的背景是", w.bg_colour],
    "背景上是X": lambda w: [w.bg, "上是", w.obj],
    "Y的底上有X": lambda w: [w.bg_colour, "的底上有", w.obj],
    "背景Y，X": lambda w: ["背景", w.bg_colour, w.punct, w.obj],
}

EN_HELD_OUT = {
    "Y background and X": lambda w: [w.bg_article, w.bg, " and ", w.obj],
    "X on a background of Y": lambda w: [
        w.obj,
        " ",
        Alt("on", "against"),
        " a background of ",
        w.bg_colour,
    ],
    "a picture of Y background with X": lambda w: [
        Alt("a picture of ", "an image of "),
        w.bg_article,
        w.bg,
        " with ",
        w.obj,
    ],
    "on Y background draw X": lambda w: ["on ", w.bg_article, w.bg, " draw ", w.obj],
    "X is on Y": lambda w: [w.obj, " is ", Alt("on", "against"), " ", w.bg_article, w.bg],
    "X, Y is the background": lambda w: [w.obj, ", ", w.bg_colour, " is the background"],
}

HELD_OUT_PATTERNS = {"zh": ZH_HELD_OUT, "en": EN_HELD_OUT}


def held_out_phrasing(
    shape: str, fg: str, bg: str, size: str, rng: np.random.Generator, language: str, name: str
) -> str:
    """A caption of the held-out pattern `name`; half of them name the size."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; languages are {', '.join(LANGUAGES)}")
    slot = SIZE_SLOTS[rng.integers(1, len(SIZE_SLOTS))] if rng.random() < 0.5 else "none"
    words = words_for(language, shape, fg, bg, size, slot)
    return sample(caption_node(HELD_OUT_PATTERNS[language], name, words, language), rng)
