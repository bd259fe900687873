"""BERT's WordPiece tokenizer (vocab.txt or tokenizer.json), id for id equal to transformers'
BertTokenizer.

Why not paddlenlp's BertTokenizer: on the first 540 prompts of the test corpus it disagreed with
transformers on 50, all with emoji (it split emoji off the word they were glued to, where BERT keeps the
run as one word and maps it to a single [UNK]). The rules below are BERT's basic tokenizer as
transformers' (Rust) `BertNormalizer` + `BertPreTokenizer` + `WordPiece` apply them:

1. special tokens written in the text ("[MASK]") are kept whole and never lower-cased;
2. clean: drop NUL, U+FFFD and control characters, turn every whitespace character into a space;
3. put spaces around CJK ideographs, so each one is a word of its own;
4. strip accents (NFD, drop combining marks), then lower-case character by character;
5. split on whitespace, then split every punctuation character off as its own word;
6. WordPiece: greedy longest match from the left, continuation pieces prefixed "##"; a word that
   cannot be covered, or is longer than 100 characters, becomes one [UNK].
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
from paddiff.plugins.text_encoders._files import read_json, refuse_added_tokens, token_text
from paddiff.plugins.text_encoders.added_tokens import TokenSplitter

MAX_WORD_CHARS = 100  # transformers' default max_input_chars_per_word
DEFAULT_SPECIALS = {
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "mask_token": "[MASK]",
}

# The CJK ideograph blocks BERT isolates (Unified, Ext. A-F, Compatibility and its supplement).
# Hiragana, Katakana and Hangul are not in them: those stay glued into words. Extension E starts
# at U+2B820, but BERT's table (and transformers', Python and Rust alike) starts it at U+2B920,
# so U+2B820-U+2B91F are not isolated.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


# transformers' BertTokenizer classifies characters with the Rust `unicode_categories` tables
# (an old Unicode version), Python with its own (Unicode 14.0 in Python 3.11). Measured over all
# code points with tokenizers 0.23, the reference differs from Python's categories only here:
# unassigned code points (Cn) are ordinary characters, not control characters; these format
# characters (Cf), newer than its tables, are ordinary characters too;
_NEWER_FORMAT_CHARS = frozenset([0x890, 0x891, 0x8E2, 0x110CD, *range(0x13430, 0x13439)])
# these punctuation characters (P*), newer than its tables, are not punctuation there;
# fmt: off
_NEWER_PUNCTUATION = (
    (0x61D, 0x61D), (0x9FD, 0x9FD), (0xA76, 0xA76), (0xC77, 0xC77), (0xC84, 0xC84),
    (0x1B7D, 0x1B7E), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0x10EAD, 0x10EAD), (0x10F55, 0x10F59),
    (0x10F86, 0x10F89), (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D),
    (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1183B, 0x1183B), (0x11944, 0x11946),
    (0x119E2, 0x119E2), (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2),
    (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF),
    (0x12FF1, 0x12FF2), (0x16E97, 0x16E9A), (0x16FE2, 0x16FE2), (0x1E95E, 0x1E95F),
)
# fmt: on
# and these two, punctuation in old Unicode and reclassified since, still are.
_OLD_PUNCTUATION = frozenset([0x166D, 0x111C9])
# When accents are stripped, these combining marks (Mn), newer than its tables, are kept;
# fmt: off
_NEWER_MARKS = (
    (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8E1), (0x9FE, 0x9FE), (0xAFA, 0xAFF), (0xB55, 0xB55),
    (0xC04, 0xC04), (0xC3C, 0xC3C), (0xD00, 0xD00), (0xD3B, 0xD3C), (0xD81, 0xD81), (0xEBA, 0xEBA),
    (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFB), (0xA82C, 0xA82C),
    (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD), (0x10D24, 0x10D27), (0x10EAB, 0x10EAC),
    (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070), (0x11073, 0x11074),
    (0x110C2, 0x110C2), (0x111C9, 0x111C9), (0x111CF, 0x111CF), (0x1123E, 0x1123E),
    (0x1133B, 0x1133B), (0x11438, 0x1143F), (0x11442, 0x11444), (0x11446, 0x11446),
    (0x1145E, 0x1145E), (0x1182F, 0x11837), (0x11839, 0x1183A), (0x1193B, 0x1193C),
    (0x1193E, 0x1193E), (0x11943, 0x11943), (0x119D4, 0x119D7), (0x119DA, 0x119DB),
    (0x119E0, 0x119E0), (0x11A01, 0x11A0A), (0x11A33, 0x11A38), (0x11A3B, 0x11A3E),
    (0x11A47, 0x11A47), (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A, 0x11A96),
    (0x11A98, 0x11A99), (0x11C30, 0x11C36), (0x11C38, 0x11C3D), (0x11C3F, 0x11C3F),
    (0x11C92, 0x11CA7), (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3), (0x11CB5, 0x11CB6),
    (0x11D31, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45),
    (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95), (0x11D97, 0x11D97),
    (0x11EF3, 0x11EF4), (0x16F4F, 0x16F4F), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D),
    (0x1CF30, 0x1CF46), (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021),
    (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE),
    (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A),
)
# fmt: on
# and these two, combining in old Unicode (now Mc), are stripped.
_OLD_MARKS = frozenset([0x1734, 0x11938])


def _is_stripped_mark(char: str) -> bool:
    code = ord(char)
    if code in _OLD_MARKS:
        return True
    if unicodedata.category(char) != "Mn":
        return False
    return not any(low <= code <= high for low, high in _NEWER_MARKS)


def _is_whitespace(char: str) -> bool:
    # The line and paragraph separators count too (Rust's char::is_whitespace).
    return char in " \t\n\r\u2028\u2029" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    # Tab, newline and carriage return count as whitespace, not control.
    if char in "\t\n\r" or ord(char) in _NEWER_FORMAT_CHARS:
        return False
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs")


def _is_punctuation(char: str) -> bool:
    # All non-alphanumeric printable ASCII counts ("$", "^", "`" are not Unicode P*), plus P*.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    if code in _OLD_PUNCTUATION:
        return True
    if not unicodedata.category(char).startswith("P"):
        return False
    return not any(low <= code <= high for low, high in _NEWER_PUNCTUATION)


class WordPieceTokenizer:
    """Text -> ids for a BERT vocabulary, with BERT's [CLS] ... [SEP] [PAD]... layout."""

    transformers_class = "BertTokenizer"  # what tokenizer_config.json / model_index.json name

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
        max_word_chars: int = MAX_WORD_CHARS,
    ):
        self.tokens = list(vocab)
        self.max_word_chars = max_word_chars
        self.vocab = {token: index for index, token in enumerate(vocab)}
        self.model_max_length: int | None = None  # the window, set by the text encoder
        # The options as given, for save_pretrained.
        self.options = {
            "do_lower_case": do_lower_case,
            "strip_accents": strip_accents,
            "tokenize_chinese_chars": tokenize_chinese_chars,
            "unk_token": unk_token,
            "cls_token": cls_token,
            "sep_token": sep_token,
            "pad_token": pad_token,
            "mask_token": mask_token,
        }
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
        # Added tokens (textual inversion): text -> its ids, matched as typed, like specials.
        self.added: dict[str, list[int]] = {}
        self._splitter = TokenSplitter(specials)

    @classmethod
    def from_folder(cls, folder: str | Path) -> WordPieceTokenizer:
        """Read a tokenizer folder as transformers does: `tokenizer.json` when there is one
        (what transformers 5 saves), else `vocab.txt` with the options in tokenizer_config.json
        (what Taiyi publishes)."""
        folder = Path(folder)
        config = read_json(folder / "tokenizer_config.json")
        options = {
            key: token_text(config[key])
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
            + ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token")
            if key in config
        }
        specials = [options.get(k, v) for k, v in DEFAULT_SPECIALS.items()]
        if (folder / "tokenizer.json").is_file():
            data = read_json(folder / "tokenizer.json")
            # the model type first: a CLIP or XLM-R folder given by mistake should say so
            tokenizer = cls._from_tokenizer_json(folder / "tokenizer.json", data, options)
            refuse_added_tokens(folder, specials, data)
            return tokenizer
        refuse_added_tokens(folder, specials)
        vocab_file = folder / "vocab.txt"
        if not vocab_file.is_file():
            raise FileNotFoundError(
                f"{folder}: neither vocab.txt nor tokenizer.json (a BERT tokenizer needs one)"
            )
        with open(vocab_file, encoding="utf-8") as f:
            vocab = [line.rstrip("\n") for line in f]
        return cls(vocab, **options)

    @classmethod
    def _from_tokenizer_json(cls, path: Path, data: dict, options: dict) -> WordPieceTokenizer:
        """The vocabulary and options of a `tokenizers` WordPiece pipeline (BertNormalizer)."""
        model, normalizer = data.get("model") or {}, data.get("normalizer") or {}
        if model.get("type") != "WordPiece" or normalizer.get("type") != "BertNormalizer":
            raise ValueError(
                f"{path}: expected a WordPiece model with a BertNormalizer, got "
                f"{model.get('type')!r} with {normalizer.get('type')!r}"
            )
        if model.get("continuing_subword_prefix", "##") != "##" or not normalizer.get(
            "clean_text", True
        ):
            raise ValueError(f"{path}: only the '##' prefix with clean_text is supported")
        by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
        if [index for _, index in by_id] != list(range(len(by_id))):
            raise ValueError(f"{path}: the vocabulary ids are not 0..{len(by_id) - 1}")
        options.update(
            do_lower_case=normalizer.get("lowercase", True),
            strip_accents=normalizer.get("strip_accents"),
            tokenize_chinese_chars=normalizer.get("handle_chinese_chars", True),
            unk_token=model.get("unk_token", options.get("unk_token", "[UNK]")),
            max_word_chars=model.get("max_input_chars_per_word", MAX_WORD_CHARS),
        )
        return cls([token for token, _ in by_id], **options)

    def save_pretrained(self, folder: str | Path) -> None:
        """vocab.txt + tokenizer_config.json, as transformers' BertTokenizer reads them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")
        config = {"tokenizer_class": self.transformers_class, **self.options}
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        (folder / "tokenizer_config.json").write_text(text, encoding="utf-8")

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
                c for c in unicodedata.normalize("NFD", text) if not _is_stripped_mark(c)
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
        if len(word) > self.max_word_chars:
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

    def has_token(self, text: str) -> bool:
        """Whether `text` is already one token (so it cannot be added as a new one)."""
        return text in self.vocab

    def text_ids(self, text: str) -> list[int]:
        """Ids of `text` without [CLS] / [SEP]."""
        ids = []
        # re.split with a capturing group: odd items are the special and added tokens.
        for index, part in enumerate(self._splitter(self.added).split(text)):
            if index % 2:
                ids += self.added.get(part) or [self.vocab[part]]
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
