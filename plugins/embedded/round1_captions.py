"""The captions the round-1 embedded model was trained with: six templates per language.

Round 2 (issue 22) trains on the phrasing grammar (`phrasing`), but a control net must be
trained with the captions its base model reads.
`benchmarks/control_caption_loss.py` measures it on the round-1 model with its control net
(forward only, 8 batches of 8, the same pictures, noise and timesteps; AMD EPYC, 2026-12-07):
the loss was 0.069 with these captions, 0.37 with grammar captions made only of words the model
knows and 0.53 with any grammar caption (0.36 with empty captions). A model exported by round 2
says `"captions": "grammar"` in its model_index.json; one that does not say it reads these
(`captions_for_model`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded.phrasing import EN_SIZE, ZH_COLOUR, ZH_SHAPE, ZH_SIZE

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
# Round 1's English shape names (phrasing's lists have grown since; its Chinese ones and the
# sizes begin with round 1's two names).
EN_SHAPE = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle", "triangle"),
    "star": ("star", "star"),
    "ring": ("ring", "donut"),
    "cross": ("cross", "plus sign"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(attrs, language: str, template: int, name: int, with_size: bool) -> str:
    """attrs (shape, fg, bg, size) in one template, with shape name 0 or 1, with or without size."""
    if language == "zh":
        size = ZH_SIZE[attrs.size] if with_size else ""
        return ZH_TEMPLATES[template].format(
            fg=ZH_COLOUR[attrs.fg] + "色",
            bg=ZH_COLOUR[attrs.bg] + "色",
            bgs=ZH_COLOUR[attrs.bg],
            shape=ZH_SHAPE[attrs.shape][name],
            sz=size,
            szde=size + "的" if size else "",
        )
    size = EN_SIZE[attrs.size][name] if with_size else ""
    words = [w for w in EN_TEMPLATES[template].split() if w != "{sz}" or size]
    return " ".join(words).format(
        a=_article(size or attrs.fg),
        a_bg=_article(attrs.bg),
        sz=size,
        fg=attrs.fg,
        bg=attrs.bg,
        shape=EN_SHAPE[attrs.shape][name],
    )


def random_caption(attrs, rng: np.random.Generator) -> str:
    """A random language, template and shape name; the size named half of the time (round 1's
    draws, in its order)."""
    language = ("zh", "en")[rng.integers(2)]
    templates = ZH_TEMPLATES if language == "zh" else EN_TEMPLATES
    template, name = int(rng.integers(len(templates))), int(rng.integers(2))
    return caption(attrs, language, template, name, with_size=bool(rng.integers(2)))


def captions_for_model(model_dir) -> str:
    """ "grammar" or "round1": the captions the embedded model in `model_dir` was trained with."""
    index = json.loads((Path(model_dir) / "model_index.json").read_text(encoding="utf-8"))
    return index.get("_paddiff_embedded", {}).get("captions", "round1")
