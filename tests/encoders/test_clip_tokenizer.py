"""The CLIP BPE tokenizer against transformers' CLIPTokenizer on the same vocab.json/merges.txt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from paddiff.plugins.text_encoders.clip_tokenizer import CLIPTokenizer, split_pieces

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sd"


def tokenizer(variant: str) -> CLIPTokenizer:
    return CLIPTokenizer.from_folder(FIXTURES / variant / "tokenizer")


@pytest.mark.parametrize("variant", ["sd1", "sd2_v"])
def test_ids_match_reference_on_300_mixed_prompts(variant):
    """Random mixes of case, digits, punctuation, contractions, accents, CJK, emoji, odd
    whitespace and special-token text, tokenised by transformers with truncation."""
    cases = json.loads((FIXTURES / variant / "tokenizer_cases.json").read_text(encoding="utf-8"))
    tok = tokenizer(variant)
    ids = tok(cases["prompts"])
    wrong = [
        prompt
        for prompt, row, expected in zip(cases["prompts"], ids, cases["ids"], strict=True)
        if row[: len(expected)].tolist() != expected
    ]
    assert not wrong, f"{len(wrong)} prompts tokenised differently, e.g. {wrong[:3]!r}"


def test_sd1_pads_with_end_of_text_and_sd2_with_exclamation_mark():
    sd1, sd2 = tokenizer("sd1"), tokenizer("sd2_v")
    assert sd1([""])[0].tolist() == [sd1.bos_id] + [sd1.eos_id] * 76
    assert sd2.pad_id == 0  # "!" is the first byte token
    assert sd2([""])[0].tolist() == [sd2.bos_id, sd2.eos_id] + [0] * 75


def test_long_prompts_are_truncated_to_77_with_end_token_last():
    tok = tokenizer("sd1")
    ids = tok(["a cat " * 100])
    assert ids.shape == (1, 77) and ids.dtype == np.int64
    assert ids[0, 0] == tok.bos_id and ids[0, 76] == tok.eos_id
    assert tok.eos_id not in ids[0, 1:76]


def test_pre_tokenisation_follows_clip_pattern():
    assert split_pieces("it's a dog's 42nd b-day!!") == [
        "it", "'s", "a", "dog", "'s", "4", "2", "nd", "b", "-", "day", "!!",
    ]  # fmt: skip
    assert split_pieces("<|endoftext|>x") == ["<|", "endoftext", "|>", "x"]


def test_special_tokens_map_overrides_tokenizer_config(tmp_path):
    folder = tmp_path / "tokenizer"
    shutil.copytree(FIXTURES / "sd1" / "tokenizer", folder)
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": {"content": "!", "lstrip": False}})
    )
    assert CLIPTokenizer.from_folder(folder).pad_id == 0


def test_tokenizer_json_alone_gives_the_same_ids(tmp_path):
    """transformers 5 saves only tokenizer.json; such a folder must tokenise identically."""
    folder = tmp_path / "tokenizer"
    shutil.copytree(FIXTURES / "sd2_v" / "tokenizer", folder)
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    prompts = json.loads((FIXTURES / "prompts.json").read_text(encoding="utf-8"))
    assert np.array_equal(CLIPTokenizer.from_folder(folder)(prompts), tokenizer("sd2_v")(prompts))


def test_missing_vocabulary_is_a_clear_error(tmp_path):
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(FileNotFoundError, match="vocab.json and merges.txt, or tokenizer.json"):
        CLIPTokenizer.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found: .*typo"):
        CLIPTokenizer.from_folder(tmp_path / "typo")  # e.g. --tokenizer with a wrong path


@pytest.mark.parametrize("variant,pad", [("sd1", "<|endoftext|>"), ("sd2", "!")])
def test_shipped_vocabulary_gives_transformers_ids_with_the_full_sd_vocab(variant, pad):
    """The tokenizer single-file checkpoints get (built from the shipped BPE file) against
    transformers' CLIPTokenizer on SD's real 49,408-token vocab.json / merges.txt
    (tests/fixtures/sd/make_full_vocab_ids.py)."""
    cases = json.loads((FIXTURES / "full_vocab_ids.json").read_text(encoding="utf-8"))
    tok = CLIPTokenizer.shipped(pad_token=pad)
    assert len(tok.vocab) == 49408 and tok.pad_id == (49407 if variant == "sd1" else 0)
    ids = tok(cases["prompts"])
    wrong = [
        prompt
        for prompt, row, expected in zip(cases["prompts"], ids, cases[variant], strict=True)
        if row[: len(expected)].tolist() != expected
        or set(row[len(expected) :].tolist()) - {tok.pad_id}
    ]
    assert not wrong, f"{len(wrong)} prompts tokenised differently, e.g. {wrong[:3]!r}"
