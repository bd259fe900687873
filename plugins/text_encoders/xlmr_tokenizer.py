"""XLM-RoBERTa's tokenizer (sentencepiece.bpe.model or tokenizer.json), id for id equal to
transformers'.

paddlenlp 2.8.1 has no XLM-R tokenizer. Running the `sentencepiece` library on the model file is
not enough either: transformers converts the model into its own pipeline, which differs from
SentencePiece on unusual text (it splits words at every Unicode whitespace character, and its
normalizer works on whole grapheme clusters). This module reads the model file (or the
`tokenizer.json` transformers 5 saves instead) itself and applies transformers' steps:

1. special tokens written in the prompt ("<mask>", "<s>") are kept whole;
2. normalize with the model's precompiled character map (NFKC-like), grapheme by grapheme;
3. split at Unicode whitespace; start every word with "▁" and split it again at each "▁";
4. segment each piece with the unigram model (Viterbi; characters no piece covers are unknown,
   and a run of unknowns is one <unk>).

Ids follow fairseq, where XLM-R was trained: <s>=0, <pad>=1, </s>=2, <unk>=3, then the model's
pieces after its first three (<unk>, <s>, </s>), so piece p has id p + 1, and <mask> last.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
from paddiff.plugins.text_encoders import rust_unicode
from paddiff.plugins.text_encoders._files import read_json, refuse_added_tokens, token_text
from paddiff.plugins.text_encoders.added_tokens import TokenSplitter

UNK = 3  # fairseq's <unk>
DEFAULT_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
UNKNOWN_PENALTY = 10.0  # an unknown character scores this much below the rarest piece
# Unicode White_Space (what transformers splits at); Python's str.split() would also split at
# U+001C..U+001F, which are not White_Space.
_WHITESPACE = re.compile(
    "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)


# -- the model file -------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, value) of a protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, value


def read_sentencepiece_model(data: bytes) -> tuple[list[tuple[str, float]], bytes]:
    """The (piece, score) list and the precompiled character map of a SentencePiece model.

    ModelProto: field 1 = pieces (1: piece, 2: score as float32), field 3 = normalizer spec
    (2: precompiled_charsmap).
    """
    pieces, charsmap = [], b""
    for number, value in _fields(data):
        if number == 1:
            piece, score = "", 0.0
            for sub, item in _fields(value):
                if sub == 1:
                    piece = item.decode("utf-8")
                elif sub == 2:
                    score = struct.unpack("<f", item)[0]
            pieces.append((piece, score))
        elif number == 3:
            charsmap = dict(_fields(value)).get(2, b"")
    return pieces, charsmap


class CharsMap:
    """SentencePiece's precompiled normalization rules: a darts-clone double-array trie from
    UTF-8 byte strings to offsets of NUL-terminated replacements. Layout: trie size (uint32
    little-endian), the trie's uint32 units, then the replacement strings."""

    def __init__(self, blob: bytes):
        if not blob:
            self.units, self.replacements = [], b""
            return
        (size,) = struct.unpack("<I", blob[:4])
        self.units = np.frombuffer(blob[4 : 4 + size], dtype="<u4").tolist()
        self.replacements = blob[4 + size :]

    def first_match(self, text: str) -> str | None:
        """Replacement for the shortest rule that is a prefix of `text` (transformers takes
        the shortest, and replaces all of `text` with it), or None."""
        if not self.units:
            return None
        units = self.units
        node = (units[0] >> 10) << ((units[0] & (1 << 9)) >> 6)
        for byte in text.encode("utf-8"):
            node ^= byte
            if node >= len(units):
                return None
            unit = units[node]
            if unit & ((1 << 31) | 0xFF) != byte:  # the unit's label
                return None
            node ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
            if (unit >> 8) & 1:  # a rule ends here; its value is the replacement's offset
                start = units[node] & ((1 << 31) - 1)
                end = self.replacements.index(b"\0", start)
                return self.replacements[start:end].decode("utf-8")
        return None

    def normalize(self, text: str) -> str:
        """Grapheme clusters (the reference's, `rust_unicode.graphemes`) under 6 bytes are replaced whole when a rule matches their start
        (transformers' behaviour, which drops the rest of such a cluster); otherwise each
        character is replaced by its own rule or kept."""
        out = []
        for cluster in rust_unicode.graphemes(text):
            if len(cluster.encode("utf-8")) < 6:
                whole = self.first_match(cluster)
                if whole is not None:
                    out.append(whole)
                    continue
            for char in cluster:
                replacement = self.first_match(char)
                out.append(char if replacement is None else replacement)
        return "".join(out)


# -- the tokenizer ---------------------------------------------------------------------------------


class XLMRobertaTokenizer:
    """Text -> ids for XLM-R: <s> text </s> then <pad>s.

    Built from a unigram vocabulary (piece, score) in id order, the precompiled character map,
    and the special tokens' names; `from_folder` reads them from the files.
    """

    transformers_class = "XLMRobertaTokenizer"  # what tokenizer_config.json names

    def __init__(
        self,
        vocab: list[tuple[str, float]],
        charsmap: bytes,
        special_tokens: dict[str, str] | None = None,
        unk_id: int = UNK,
        files: dict[str, bytes] | None = None,
    ):
        self.files = files or {}  # the tokenizer files it came from, for save_pretrained
        self.model_max_length: int | None = None  # the window, set by the text encoder
        self.charsmap = CharsMap(charsmap)
        names = dict(DEFAULT_SPECIALS)
        names |= {k: v for k, v in (special_tokens or {}).items() if k in names}
        self.names = names
        self.vocab_size = len(vocab)
        self.pieces = {piece: (index, score) for index, (piece, score) in enumerate(vocab)}
        self.longest_piece = max(len(piece) for piece, _ in vocab)
        self.unknown_score = min(score for _, score in vocab) - UNKNOWN_PENALTY
        self.unk_id = unk_id
        missing = [name for name in names.values() if name not in self.pieces]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self.special_ids = {name: self.pieces[name][0] for name in names.values()}
        self.bos_id, self.pad_id, self.eos_id = (
            self.special_ids[names[k]] for k in ("bos_token", "pad_token", "eos_token")
        )
        # Added tokens (textual inversion): text -> its ids, matched as typed, like specials.
        self.added: dict[str, list[int]] = {}
        self._splitter = TokenSplitter(self.special_ids)

    @classmethod
    def from_sentencepiece(cls, model: bytes, special_tokens: dict | None = None):
        """From `sentencepiece.bpe.model`, in fairseq's id layout as transformers converts it:
        <s>, <pad>, </s>, <unk> (score 0), the pieces after the model's first three, <mask>."""
        pieces, charsmap = read_sentencepiece_model(model)
        if len(pieces) < 4:
            raise ValueError("the SentencePiece model has fewer than 4 pieces")
        names = dict(DEFAULT_SPECIALS)
        names |= {k: v for k, v in (special_tokens or {}).items() if k in names}
        vocab = [(names[k], 0.0) for k in ("bos_token", "pad_token", "eos_token", "unk_token")]
        vocab += [*pieces[3:], (names["mask_token"], 0.0)]
        return cls(vocab, charsmap, names, UNK, {"sentencepiece.bpe.model": model})

    @classmethod
    def from_tokenizer_json(cls, raw: bytes, special_tokens: dict | None = None):
        """From transformers 5's `tokenizer.json`: a Unigram model after a Precompiled
        normalizer, split by WhitespaceSplit + Metaspace (checked, not assumed)."""
        data = json.loads(raw)
        model, normalizer = data.get("model") or {}, data.get("normalizer") or {}
        pre = json.dumps(data.get("pre_tokenizer"))
        if (
            model.get("type") != "Unigram"
            or normalizer.get("type") != "Precompiled"
            or "WhitespaceSplit" not in pre
            or "Metaspace" not in pre
            or model.get("byte_fallback")
        ):
            raise ValueError(
                "tokenizer.json is not XLM-R's pipeline (Precompiled normalizer, WhitespaceSplit "
                f"+ Metaspace, Unigram without byte fallback): model {model.get('type')!r}, "
                f"normalizer {normalizer.get('type')!r}"
            )
        vocab = [(piece, float(score)) for piece, score in model["vocab"]]
        charsmap = base64.b64decode(normalizer.get("precompiled_charsmap") or "")
        unk_id = model.get("unk_id", UNK)
        return cls(vocab, charsmap, special_tokens, unk_id, {"tokenizer.json": raw})

    @classmethod
    def from_folder(cls, folder: str | Path) -> XLMRobertaTokenizer:
        """Read a tokenizer folder as transformers does: `tokenizer.json` when there is one
        (what transformers 5 saves), else `sentencepiece.bpe.model` (what AltDiffusion
        publishes)."""
        folder = Path(folder)
        config = read_json(folder / "tokenizer_config.json")
        specials = {k: token_text(v) for k, v in config.items() if k in DEFAULT_SPECIALS}
        names = [specials.get(k, v) for k, v in DEFAULT_SPECIALS.items()]
        if (folder / "tokenizer.json").is_file():
            raw = (folder / "tokenizer.json").read_bytes()
            refuse_added_tokens(folder, names, json.loads(raw))
            return cls.from_tokenizer_json(raw, specials)
        refuse_added_tokens(folder, names)
        if (folder / "sentencepiece.bpe.model").is_file():
            return cls.from_sentencepiece(
                (folder / "sentencepiece.bpe.model").read_bytes(), specials
            )
        raise FileNotFoundError(
            f"{folder}: neither sentencepiece.bpe.model nor tokenizer.json (an XLM-R tokenizer "
            "needs one)"
        )

    def save_pretrained(self, folder: str | Path) -> None:
        """The tokenizer file it was read from + tokenizer_config.json, as transformers reads
        them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        config = {"tokenizer_class": self.transformers_class, **self.names}
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        (folder / "tokenizer_config.json").write_text(text, encoding="utf-8")

    def _segment(self, piece: str) -> list[int]:
        """Best-scoring split of `piece` into vocabulary pieces (unigram Viterbi).

        Ties go to the split whose last piece starts earliest, as in transformers; a character
        no piece covers is an unknown, and consecutive unknowns become one <unk>.
        """
        best: list[tuple[float, int, int] | None] = [None] * (len(piece) + 1)  # score, start, id
        best[0] = (0.0, 0, -1)
        for start in range(len(piece)):
            so_far = best[start][0]
            single_char = False
            for end in range(start + 1, min(len(piece), start + self.longest_piece) + 1):
                entry = self.pieces.get(piece[start:end])
                if entry is None:
                    continue
                single_char = single_char or end == start + 1
                score = so_far + entry[1]
                if best[end] is None or score > best[end][0]:
                    best[end] = (score, start, entry[0])
            if not single_char:
                score = so_far + self.unknown_score
                if best[start + 1] is None or score > best[start + 1][0]:
                    best[start + 1] = (score, start, self.unk_id)
        ids, end = [], len(piece)
        while end > 0:
            _, start, token = best[end]
            if not (token == self.unk_id and ids and ids[-1] == self.unk_id):
                ids.append(token)
            end = start
        return ids[::-1]

    def has_token(self, text: str) -> bool:
        """Whether `text` is already one token (so it cannot be added as a new one)."""
        return text in self.pieces

    def text_ids(self, text: str) -> list[int]:
        """Ids of `text` without <s> / </s>."""
        ids = []
        # re.split with a capturing group: odd items are the special and added tokens.
        for index, part in enumerate(self._splitter(self.added).split(text)):
            if index % 2:
                ids += self.added.get(part) or [self.special_ids[part]]
                continue
            for word in _WHITESPACE.split(self.charsmap.normalize(part)):
                if not word:
                    continue
                word = word if word.startswith("▁") else "▁" + word
                for piece in re.findall("▁[^▁]*", word):
                    ids += self._segment(piece)
        return ids

    def __call__(self, prompts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask), int64 (batch, max_length); long text is cut at the end."""
        ids = np.full((len(prompts), max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(prompts), max_length), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            tokens = [self.bos_id, *self.text_ids(prompt)[: max_length - 2], self.eos_id]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask
