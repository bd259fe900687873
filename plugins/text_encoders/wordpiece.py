"""BERT's WordPiece tokenizer (vocab.txt), id for id equal to transformers' BertTokenizer.

Why not paddlenlp's BertTokenizer: on the 540-prompt test corpus it disagreed with transformers on
50 prompts, all with emoji (it split emoji off the word they were glued to, where BERT keeps the
run as one word and maps it to a single [UNK]). The rules below are BERT's basic tokenizer as
transformers' (Rust) `BertNormalizer` + `BertPreTokenizer` + `WordPiece` apply them:

1. special tokens written in the text ("[MASK]") are kept whole and never lower-cased;
2. clean: drop NUL, U+FFFD and control characters, turn every whitespace character into a space;
3. put spaces around CJK ideographs, so each one is a word of its own;
4. lower-case (character by character) and strip accents (NFD, drop combining marks);
5. split on whitespace, then split every punctuation character off as its own word;
6. WordPiece: greedy longest match from the left, continuation pieces prefixed "##"; a word that
   cannot be covered, or is longer than 100 characters, becomes one [UNK].
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
from paddiff.plugins.text_encoders._files import read_json, token_text

MAX_WORD_CHARS = 100  # transformers' default max_input_chars_per_word

# The CJK ideograph blocks BERT isolates (Unified, Ext. A-F, Compatibility and its supplement).
# Hiragana, Katakana and Hangul are not in them: those stay glued into words.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    # Tab, newline and carriage return count as whitespace, not control.
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    # All non-alphanumeric printable ASCII counts ("$", "^", "`" are not Unicode P*), plus P*.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class WordPieceTokenizer:
    """Text -> ids for a BERT vocabulary, with BERT's [CLS] ... [SEP] [PAD]... layout."""

    def __init__(
        self,
        vocab: list[str],
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
    ):
        self.vocab = {token: index for index, token in enumerate(vocab)}
        self.do_lower_case = do_lower_case
        # Accents are stripped when asked, or by default whenever text is lower-cased.
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        specials = [unk_token, cls_token, sep_token, pad_token, mask_token]
        missing = [token for token in specials if token not in self.vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (
            self.vocab[t] for t in (unk_token, cls_token, sep_token, pad_token)
        )
        longest_first = sorted(specials, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")

    @classmethod
    def from_folder(cls, folder: str | Path) -> WordPieceTokenizer:
        """Read `vocab.txt` and the options in `tokenizer_config.json` (as published)."""
        folder = Path(folder)
        vocab_file = folder / "vocab.txt"
        if not vocab_file.is_file():
            raise FileNotFoundError(f"{folder}: no vocab.txt (a BERT tokenizer folder needs one)")
        with open(vocab_file, encoding="utf-8") as f:
            vocab = [line.rstrip("\n") for line in f]
        config = read_json(folder / "tokenizer_config.json")
        options = {
            key: token_text(config[key])
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
            + ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token")
            if key in config
        }
        return cls(vocab, **options)

    # -- text -> pieces -------------------------------------------------------------------------

    def _words(self, text: str) -> list[str]:
        """Steps 2-5: the words and punctuation marks of text without special tokens."""
        chars = []
        for char in text:
            if char in "\x00\ufffd" or _is_control(char):
                continue
            if _is_whitespace(char):
                chars.append(" ")
            elif self.tokenize_chinese_chars and _is_cjk(char):
                chars.append(f" {char} ")
            else:
                chars.append(char)
        text = "".join(chars)
        if self.strip_accents:
            text = "".join(
                c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
            )
        if self.do_lower_case:
            text = "".join(c.lower() for c in text)
        words = []
        for chunk in text.split():
            start = 0
            for i, char in enumerate(chunk):
                if _is_punctuation(char):
                    words += [chunk[start:i], char] if i > start else [char]
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def _word_ids(self, word: str) -> list[int]:
        """Step 6: greedy longest-match-first WordPiece."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.unk_id]
        return ids

    def text_ids(self, text: str) -> list[int]:
        """Ids of `text` without [CLS] / [SEP]."""
        ids = []
        # re.split with a capturing group: odd items are the special tokens themselves.
        for index, part in enumerate(self._special.split(text)):
            if index % 2:
                ids.append(self.vocab[part])
            elif part:
                ids += [i for word in self._words(part) for i in self._word_ids(word)]
        return ids

    # -- batches ------------------------------------------------------------------------------

    def __call__(self, prompts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask), int64 (batch, max_length): [CLS] text [SEP] then [PAD]s;
        text longer than max_length - 2 tokens is cut at the end."""
        ids = np.full((len(prompts), max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(prompts), max_length), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            tokens = [self.cls_id, *self.text_ids(prompt)[: max_length - 2], self.sep_id]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask
