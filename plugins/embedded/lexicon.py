"""The embedded model's vocabulary and caption parser: which words it learnt, which words of a
prompt it does not know (with a warning in the prompt's language), and what a caption asks for.

The vocabulary is every character (Chinese) and word (English) the training grammar
(`phrasing`) can write; the tokenizer's vocab.txt is built from it (`train.build_vocabulary`), and
the shipped model knows those of its words that are whole tokens of its vocab.txt.
A prompt's other words still tokenize (unknown Chinese characters to [UNK], unknown English words
to letter pieces), but the model never saw them: `unknown_words` names them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from paddiff.plugins.embedded import MODEL_DIR, phrasing

CJK = "\u4e00-\u9fff"
#: A prompt's units: one Chinese character, an English word (letters and digits), or a
#: single other non-space character (punctuation).
_UNITS = re.compile(rf"[{CJK}]|[a-z0-9]+|[^\s{CJK}a-z0-9]")
_ENGLISH_WORDS = re.compile(rf"[a-z]+|[^\sa-z{CJK}]")


def _grammar_terminals(language: str) -> set[str]:
    from paddiff.plugins.embedded import dataset  # the attribute lists

    found = set(phrasing.terminals(phrasing.END[language]))
    for shape in dataset.SHAPES:
        for fg in dataset.COLOURS:
            for size in dataset.SIZES:
                for slot in phrasing.SIZE_SLOTS:
                    bg = next(c for c in dataset.COLOURS if c != fg)
                    words = phrasing.words_for(language, shape, fg, bg, size, slot)
                    found |= phrasing.terminals(words.tail)
                    for pattern in phrasing.PATTERNS[language].values():
                        found |= phrasing.terminals(pattern(words))
    return found


@functools.cache
def caption_vocabulary() -> tuple[list[str], list[str]]:
    """(Chinese characters and full-width punctuation, English words and punctuation) of the
    training grammar, sorted."""
    chinese = {ch for text in _grammar_terminals("zh") for ch in text if not ch.isspace()}
    english = {w for text in _grammar_terminals("en") for w in _ENGLISH_WORDS.findall(text)}
    # ASCII punctuation the Chinese grammar uses (",") is an English "word" of the tokenizer.
    ascii_marks = {ch for ch in chinese if ch.isascii()}
    return sorted(chinese - ascii_marks), sorted(english | ascii_marks)


def language_of(prompt: str) -> str:
    return "zh" if re.search(f"[{CJK}]", prompt) else "en"


def grammar_words() -> frozenset[str]:
    chinese, english = caption_vocabulary()
    return frozenset(chinese) | frozenset(english)


@functools.cache
def model_words(folder: Path = MODEL_DIR) -> frozenset[str]:
    """The words the model in `folder` was trained on: the grammar's words that are whole tokens
    of its tokenizer. A model exported before the grammar grew knows fewer of them (its
    tokenizer maps the newer characters to [UNK]); with no model, the grammar's words."""
    vocab = folder / "tokenizer" / "vocab.txt"
    if not vocab.is_file():
        return grammar_words()
    tokens = set(vocab.read_text(encoding="utf-8").split())
    return frozenset(w for w in grammar_words() if w in tokens)


def unknown_words(prompt: str, known: frozenset[str] | None = None) -> list[str]:
    """The prompt's Chinese characters and English words (and numbers) that the shipped model
    was not trained on (or that are not in `known`), in order, each once. Punctuation is not
    reported."""
    known = model_words() if known is None else known
    found = []
    for unit in _UNITS.findall(prompt.lower()):
        is_word = unit[0].isalnum()
        if is_word and unit not in known and unit not in found:
            found.append(unit)
    return found


def unknown_words_warning(prompt: str, known: frozenset[str] | None = None) -> str | None:
    """A warning naming the prompt's unknown words, in the prompt's language; None if all known."""
    unknown = unknown_words(prompt, known)
    if not unknown:
        return None
    if language_of(prompt) == "zh":
        return (
            f"内置模型不认识提示词中的：{'、'.join(unknown)}。它只学过纯色背景上的一个简单图形"
            "（圆形、正方形、三角形、五角星、圆环、十字形，八种颜色），仍照常生成图像。"
        )
    return (
        f"the embedded model does not know these words of the prompt: {', '.join(unknown)}. "
        "It only learnt one simple shape (circle, square, triangle, star, ring, cross) in eight "
        "colours on a plain background; generating anyway."
    )


# -- the caption parser ----------------------------------------------------------------------


def _names(table: dict) -> dict[str, str]:
    """word -> attribute value, for tables of value -> word(s)."""
    out = {}
    for value, words in table.items():
        for word in (words,) if isinstance(words, str) else words:
            out[word] = value
    return out


def parse(text: str) -> dict:
    """What a caption asks for: {"shape", "fg", "bg", "size" (None if unstated), "language"}.

    The background colour is the one the caption ties to 背景/底 or to background/backdrop
    ("蓝色背景", "背景是蓝色", "on blue", "a background of blue"), the shape colour the other.
    Raises ValueError when the text does not name one shape and two colours in those roles."""
    language = language_of(text)
    parsed = _parse_zh(text) if language == "zh" else _parse_en(text.lower())
    if parsed is None or None in (parsed["shape"], parsed["fg"], parsed["bg"]):
        raise ValueError(f"not a caption of the embedded dataset: {text!r}")
    return {**parsed, "language": language}


def _longest_matches(text: str, names: dict[str, str], words=False) -> list[tuple[int, str]]:
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    if words:  # whole English words only: "circles" is not "circle"
        pattern = rf"\b(?:{pattern})\b"
    return [(m.start(), names[m.group()]) for m in re.finditer(pattern, text)]


def _parse_zh(text: str) -> dict | None:
    text = re.sub(r"\s", "", text)
    shapes = {s for _, s in _longest_matches(text, _names(phrasing.ZH_SHAPE))}
    colour_of = _names(phrasing.ZH_COLOUR)
    colours = "".join(colour_of)
    roles = {"fg": [], "bg": []}
    for match in re.finditer(f"[{colours}]", text):
        before, after = text[: match.start()], text[match.end() :]
        # "背景是蓝色" / "背景蓝色" name the background after it, unless that 背景 already has
        # its colour in front ("蓝色背景红色圆形").
        is_bg = re.match("色?的?(背景|底)", after) or (
            re.search("背景[是为]?$", before)
            and not re.search(f"[{colours}]色?的?背景[是为]?$", before)
        )
        roles["bg" if is_bg else "fg"].append(colour_of[match.group()])
    sizes = {v for k, v in _names(phrasing.ZH_SIZE).items() if k in text}
    return _result(shapes, roles, sizes)


def _parse_en(text: str) -> dict | None:
    words = re.findall(r"[a-z]+|[,;.]", text.replace("-", " "))
    shape_names = _names(phrasing.EN_SHAPE)
    joined = " ".join(words)
    found = _longest_matches(
        joined, {n.replace("-", " "): s for n, s in shape_names.items()}, words=True
    )
    shapes = {s for _, s in found}
    colours = set(phrasing.ZH_COLOUR)  # the English names are the keys
    roles = {"fg": [], "bg": []}
    for i, word in enumerate(words):
        if word not in colours:
            continue
        after = words[i + 1 : i + 4]
        j = i - 1
        while j >= 0 and words[j] in ("a", "an", "the", "one"):
            j -= 1
        before = words[j] if j >= 0 else ""
        is_bg = (
            after[:1] in (["background"], ["backdrop"])
            or after == ["is", "the", "background"]
            or before in ("on", "against", "over", "is")
            or (before == "of" and j > 0 and words[j - 1] == "background")
        )
        roles["bg" if is_bg else "fg"].append(word)
    sizes = {_names(phrasing.EN_SIZE)[w] for w in words if w in _names(phrasing.EN_SIZE)}
    return _result(shapes, roles, sizes)


def _result(shapes: set, roles: dict, sizes: set) -> dict | None:
    if len(shapes) != 1 or len(roles["fg"]) != 1 or len(roles["bg"]) != 1 or len(sizes) > 1:
        return None
    return {
        "shape": shapes.pop(),
        "fg": roles["fg"][0],
        "bg": roles["bg"][0],
        "size": sizes.pop() if sizes else None,
    }
