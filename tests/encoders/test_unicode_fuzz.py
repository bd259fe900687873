"""paddiff's three tokenizers against transformers on random strings over the whole Unicode range
(issue 23): control characters, U+001C-U+001F, every whitespace character, Greek words ending in
capital sigma, combining marks and code points newer than Python's unicodedata. The strings and
transformers' ids come from tests/fixtures/unicode_fuzz/make_reference.py.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from paddiff.plugins.text_encoders.clip_tokenizer import CLIPTokenizer
from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer
from paddiff.plugins.text_encoders.xlmr_tokenizer import XLMRobertaTokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures"
# PADDIFF_FUZZ_REFERENCE: a larger file from make_reference.py --count N --out FILE, for a
# one-off check.
REFERENCE_FILE = os.environ.get("PADDIFF_FUZZ_REFERENCE") or (
    FIXTURES / "unicode_fuzz" / "reference_ids.json"
)
REFERENCE = json.loads(Path(REFERENCE_FILE).read_text(encoding="utf-8"))
STRINGS = REFERENCE["strings"]

TOKENIZERS = {
    "clip_sd1": lambda: CLIPTokenizer.from_folder(FIXTURES / "sd/sd1/tokenizer"),
    "clip_sd2": lambda: CLIPTokenizer.from_folder(FIXTURES / "sd/sd2_v/tokenizer"),
    "clip_full": lambda: CLIPTokenizer.shipped(),
    "bert_taiyi": lambda: WordPieceTokenizer.from_folder(FIXTURES / "chinese/taiyi_like/tokenizer"),
    "bert_cased": lambda: WordPieceTokenizer.from_folder(
        FIXTURES / "chinese/chinese_clip_like/tokenizer"
    ),
    "xlm_roberta": lambda: XLMRobertaTokenizer.from_folder(
        FIXTURES / "chinese/altdiffusion_like/tokenizer"
    ),
}


def ids_of(key: str, strings: list[str]) -> list[list[int]]:
    """Unpadded ids truncated to the reference's window, as transformers returned them."""
    tokenizer, window = TOKENIZERS[key](), REFERENCE["max_length"]
    if isinstance(tokenizer, CLIPTokenizer):
        tokenizer.max_length = window
        return [
            [tokenizer.bos_id, *tokenizer.encode_text(s)[: window - 2], tokenizer.eos_id]
            for s in strings
        ]
    ids, mask = tokenizer(strings, window)
    return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)]


@pytest.mark.parametrize("key", list(TOKENIZERS))
def test_every_fuzz_string_gets_the_reference_ids(key):
    got = ids_of(key, STRINGS)
    wrong = [i for i, (a, b) in enumerate(zip(got, REFERENCE["ids"][key], strict=True)) if a != b]
    examples = "\n".join(
        f"{STRINGS[i]!r}: {got[i][:12]} != {REFERENCE['ids'][key][i][:12]}" for i in wrong[:5]
    )
    assert not wrong, f"{len(wrong)} of {len(STRINGS)} strings differ, e.g.\n{examples}"


def test_the_fuzz_covers_the_inputs_that_found_the_defects():
    text = "".join(STRINGS)
    chars = set(text)
    assert len(STRINGS) >= 1500
    assert {"\x1c", "\x1d", "\x1e", "\x1f", "\x00", "\x85", "\u3000"} <= chars
    assert any(s for s in STRINGS if "ΟΔΟΣ" in s or "ΣΑΣ" in s)
    assert {ord(c) >> 16 for c in chars} == set(range(17))  # every plane
    newer = [c for c in chars if unicodedata.category(c) == "Cn" and 0x30000 > ord(c) > 0x500]
    assert len(newer) > 100  # letters and marks newer than Python's tables, e.g. CJK Ext. H-J
    assert sum(unicodedata.category(c).startswith("M") for c in chars) > 100


def test_the_three_clip_causes_from_the_issue():
    """(a) lower-casing is per character, so a final capital sigma becomes σ; (b) U+001C-U+001F
    are not whitespace; (c) letters newer than Python's tables (U+31350, CJK Ext. H) are letters."""
    from paddiff.plugins.text_encoders import rust_unicode
    from paddiff.plugins.text_encoders.clip_tokenizer import split_pieces

    assert rust_unicode.lowercase("ΟΔΟΣ ΣΑΣ") == "οδοσ σασ"
    assert split_pieces("a\x1cb\x1f c") == ["a", "\x1c", "b", "\x1f", "c"]
    assert split_pieces("x\U00031350\U00031351y") == ["x\U00031350\U00031351y"]
    tok = CLIPTokenizer.shipped()
    assert tok.encode_text("ΟΔΟΣ") == tok.encode_text("οδοσ")
