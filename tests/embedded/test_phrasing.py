"""The embedded model's phrasing grammar: captions say what the image shows in the many ways people
write it, the held-out phrasings are out of the training grammar's reach, and the caption parser
and the unknown-word check agree with the vocabulary the model was trained on."""

from __future__ import annotations

import re

import numpy as np
import pytest
from paddiff.plugins.embedded import dataset, held_out_phrasings, lexicon, phrasing

# Attributes that exercise articles ("an orange"), two-word shape names and both sizes.
EXAMPLES = [("circle", "red", "blue", "big"), ("star", "orange", "purple", "small")]


def normalised(text: str) -> str:
    """Punctuation and spacing removed: a held-out phrasing must differ in more than these."""
    return re.sub(r"[\s,，、。.;]", "", text)


@pytest.mark.parametrize("language", phrasing.LANGUAGES)
@pytest.mark.parametrize("attrs", EXAMPLES)
def test_the_training_grammar_cannot_produce_a_held_out_phrasing(language, attrs):
    training = {normalised(t) for t in phrasing.all_captions(*attrs, language)}
    held_out = phrasing.all_captions(
        *attrs, language, patterns=held_out_phrasings.HELD_OUT_PATTERNS[language]
    )
    assert len(training) > 5000 and len(held_out) > 1000
    assert not [t for t in held_out if normalised(t) in training]


def test_the_training_data_never_imports_the_held_out_phrasings():
    import ast
    from pathlib import Path

    folder = Path(dataset.__file__).parent
    for module in ("dataset", "phrasing", "grammar", "lexicon", "train"):
        tree = ast.parse((folder / f"{module}.py").read_text(encoding="utf-8"))
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any("held_out_phrasings" in n for n in names), module


@pytest.mark.parametrize("language", phrasing.LANGUAGES)
def test_held_out_phrasings_use_only_words_the_model_was_trained_on(language):
    rng = np.random.default_rng(0)
    for shape, fg, bg in dataset.all_combinations()[::7]:
        for name in held_out_phrasings.HELD_OUT_PATTERNS[language]:
            text = held_out_phrasings.held_out_phrasing(shape, fg, bg, "big", rng, language, name)
            assert lexicon.unknown_words(text, lexicon.grammar_words()) == [], text


@pytest.mark.parametrize("language", phrasing.LANGUAGES)
def test_every_phrasing_parses_back_to_its_attributes(language):
    """The grammar is unambiguous: the colour it ties to the background is the background."""
    rng = np.random.default_rng(1)
    held_out = held_out_phrasings.HELD_OUT_PATTERNS[language]
    for shape, fg, bg in dataset.all_combinations()[::3]:
        for size in dataset.SIZES:
            texts = [phrasing.random_phrasing(shape, fg, bg, size, rng, language)[1]]
            texts += [
                held_out_phrasings.held_out_phrasing(shape, fg, bg, size, rng, language, name)
                for name in held_out
            ]
            for text in texts:
                parsed = lexicon.parse(text)
                assert (parsed["shape"], parsed["fg"], parsed["bg"]) == (shape, fg, bg), text
                assert parsed["size"] in (None, size) and parsed["language"] == language, text


def test_the_grammar_covers_the_ways_the_issue_names():
    zh = phrasing.all_captions("circle", "red", "blue", "big", "zh")
    en = phrasing.all_captions("circle", "red", "blue", "big", "en")
    for text in [
        "蓝色背景上的红色圆形",  # the first issue's example, without a measure word
        "蓝色背景上的一个红色圆形",
        "红色圆形，蓝底",  # object first, 底
        "红圆，背景是蓝色",  # colour without 色, 背景是
        "画一个红色的圆圈，蓝色背景",  # 画一个..., 圆圈
        "在蓝色背景上画着一个大的红色圆形",
        "红色的大圆盘在蓝色背景上。",
    ]:
        assert text in zh, text
    for text in [
        "a red circle on a blue background",
        "a picture of a big red disc on blue",
        "blue background with a red circle",
        "red circle, blue backdrop",
        "draw the red dot against a blue background.",
        "on a blue background, a red circle, big",
    ]:
        assert text in en, text


def test_captions_fit_the_text_encoders_window():
    from paddiff.plugins.embedded import train

    longest = {}
    for language in phrasing.LANGUAGES:
        texts = phrasing.all_captions("star", "orange", "purple", "small", language)
        longest[language] = max(texts, key=len)
    # Chinese: one token per character; English: words and punctuation. [CLS] and [SEP] too.
    assert len(re.sub(r"\s", "", longest["zh"])) + 2 <= train.TEXT_LENGTH, longest["zh"]
    assert len(re.findall(r"[a-z]+|[^\sa-z]", longest["en"])) + 2 <= train.TEXT_LENGTH


def test_unknown_words_are_named_in_the_prompts_language():
    assert lexicon.unknown_words("一只猫") == ["只", "猫"]
    warning = lexicon.unknown_words_warning("一只猫")
    assert "猫" in warning and "不认识" in warning
    warning = lexicon.unknown_words_warning("A photo of a cat, 4k")
    assert "photo, cat, 4k" in warning and "does not know" in warning
    assert lexicon.unknown_words_warning("蓝色背景上的红色圆形。") is None
    everything = lexicon.grammar_words()  # the shipped model may predate some of the words
    assert (
        lexicon.unknown_words_warning("Draw a big red circle on a blue background!", everything)
        is None
    )
    assert lexicon.unknown_words("画一个红色的圆圈，背景是蓝色", everything) == []


def test_the_caption_parser_refuses_text_that_is_not_a_caption():
    for text in ("a photo of a cat", "红色", "a red circle", "red and blue circles"):
        with pytest.raises(ValueError, match="not a caption"):
            lexicon.parse(text)
