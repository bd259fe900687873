"""CLIP's byte-level BPE tokenizer, read from a model folder's `tokenizer/` (vocab.json, merges.txt).

It reproduces transformers' CLIPTokenizer (the `tokenizers`-backed one Stable Diffusion pipelines
use): NFC normalisation, whitespace runs collapsed, lower case character by character (a final
capital sigma becomes σ, not ς), all with the reference's Unicode tables (`rust_unicode`: its
whitespace excludes U+001C-U+001F, its letters include Unicode 16.0's); the text split into special
tokens, contractions, letter runs, single digits and runs of other non-space characters; each
piece's UTF-8 bytes mapped to printable characters (GPT-2's table) and merged by BPE rank, with
`</w>` marking the end of a word. Ids are `[bos] + pieces[:max_length - 2] + [eos]`, padded to
`max_length` with the pad token the folder names ("<|endoftext|>" in SD 1.x, "!" in SD 2.x).

Single-file checkpoints carry no tokenizer folder, so paddiff ships OpenAI's original merges file
(`data/bpe_simple_vocab_16e6.txt.gz`, MIT licence, see data/NOTICE); `CLIPTokenizer.shipped`
builds SD's 49,408-token vocabulary from it.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from paddiff.plugins.text_encoders import rust_unicode
from paddiff.plugins.text_encoders.rust_unicode import kind as char_kind

END_OF_WORD = "</w>"
# The pre-tokeniser's first alternatives: the special tokens' text (reached here only when it was
# not typed exactly, e.g. "<|ENDOFTEXT|>" before lower-casing), then English contractions.
SPECIAL_TEXTS = ("<|startoftext|>", "<|endoftext|>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
SHIPPED_BPE_FILE = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"
# CLIP's vocabulary is 49,408 tokens: 2 * 256 byte tokens, these merges, 2 special tokens.
CLIP_MERGES = 49408 - 2 * 256 - 2


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
    themselves, the rest to code points 256 and up, so BPE never sees spaces or control bytes."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    table = {b: chr(b) for b in keep}
    extra = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(extra)
            extra += 1
    return table


def split_pieces(text: str) -> list[str]:
    """CLIP's pre-tokenisation of normalised text, alternatives tried in the regex's order:
    special-token text and contractions, a run of letters, one number character, a run of other
    non-space characters."""
    pieces, i = [], 0
    while i < len(text):
        kind = char_kind(text[i])
        if kind == "S":
            i += 1
            continue
        special = next((t for t in SPECIAL_TEXTS if text.startswith(t, i)), None)
        contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
        if special:
            # Kept as one piece by CLIP's split, then cut again by the byte-level step's GPT-2
            # pattern into punctuation, letters, punctuation: "<|", "endoftext", "|>".
            pieces.extend(["<|", special[2:-2], "|>"])
            i += len(special)
            continue
        if contraction:
            end = i + len(contraction)
        elif kind == "N":
            end = i + 1
        else:
            end = i + 1
            while end < len(text) and char_kind(text[end]) == kind:
                end += 1
        pieces.append(text[i:end])
        i = end
    return pieces


class CLIPTokenizer:
    """Text -> CLIP token ids, identical to the reference tokenizer for the same files."""

    transformers_class = "CLIPTokenizer"  # what tokenizer_config.json / model_index.json name

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        max_length: int = 77,
        bos_token: str = "<|startoftext|>",
        eos_token: str = "<|endoftext|>",
        pad_token: str = "<|endoftext|>",
    ):
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.max_length = max_length
        self.bos_id, self.eos_id, self.pad_id = (
            self._id(bos_token),
            self._id(eos_token),
            self._id(pad_token),
        )
        # Special tokens typed in a prompt are kept whole, as the reference does. That includes
        # the pad token: with SD 2.x's pad token "!", every "!" in a prompt becomes id 0.
        self.special = {bos_token: self.bos_id, eos_token: self.eos_id, pad_token: self.pad_id}
        # Textual-inversion tokens: text -> its ids (one per vector), matched like special tokens.
        self.added: dict[str, list[int]] = {}
        self._cache: dict[str, list[int]] = {}

    def has_token(self, text: str) -> bool:
        """Whether `text` is already one token (so it cannot be added as a new one)."""
        return text in self.vocab or text in self.special

    def _id(self, token: str) -> int:
        if token not in self.vocab:
            raise ValueError(f"special token {token!r} is not in the vocabulary")
        return self.vocab[token]

    @classmethod
    def from_folder(cls, folder: str | Path) -> CLIPTokenizer:
        """Read vocab.json + merges.txt, and special tokens / max length from
        tokenizer_config.json, overridden by special_tokens_map.json as transformers does."""
        folder = Path(folder)
        vocab, merges = _read_vocab_and_merges(folder)
        settings = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).is_file():
                settings.update(json.loads((folder / name).read_text(encoding="utf-8")))
        tokens = {
            key: _token_text(settings[key])
            for key in ("bos_token", "eos_token", "pad_token")
            if settings.get(key) is not None
        }
        max_length = int(settings.get("model_max_length", 77))
        if max_length > 10**6:  # transformers writes a huge sentinel when the length is unset
            max_length = 77
        return cls(vocab, merges, max_length=max_length, **tokens)

    @classmethod
    def shipped(cls, pad_token: str = "<|endoftext|>", max_length: int = 77) -> CLIPTokenizer:
        """Stable Diffusion's tokenizer from the shipped merges file: pad_token "<|endoftext|>"
        for SD 1.x, "!" for SD 2.x (the two differ in nothing else)."""
        vocab, merges = _shipped_vocab_and_merges()
        return cls(dict(vocab), list(merges), max_length=max_length, pad_token=pad_token)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write vocab.json, merges.txt and tokenizer_config.json, which `from_folder` reads back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        text_of = {i: token for token, i in self.vocab.items()}
        merges = sorted(self.ranks, key=self.ranks.get)
        (folder / "vocab.json").write_text(
            json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8"
        )
        lines = ["#version: 0.2"] + [" ".join(pair) for pair in merges]
        (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        settings = {
            "tokenizer_class": self.transformers_class,
            "model_max_length": self.max_length,
            "bos_token": text_of[self.bos_id],
            "eos_token": text_of[self.eos_id],
            "pad_token": text_of[self.pad_id],
        }
        (folder / "tokenizer_config.json").write_text(
            json.dumps(settings, indent=2), encoding="utf-8"
        )

    def bpe(self, piece: str) -> list[int]:
        """Ids of one pre-tokenised piece: byte characters merged by lowest rank first."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        table = byte_to_char()
        symbols = [table[b] for b in piece.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        while len(symbols) > 1:
            ranked = [
                (self.ranks[pair], i)
                for i, pair in enumerate(zip(symbols, symbols[1:], strict=False))
                if pair in self.ranks
            ]
            if not ranked:
                break
            _, at = min(ranked)
            first, second = symbols[at], symbols[at + 1]
            merged, i = [], 0
            while i < len(symbols):  # merge every occurrence of the best pair, left to right
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = [self.vocab[s] for s in symbols]
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def encode_text(self, text: str) -> list[int]:
        """Ids of `text` without special tokens, padding or truncation."""
        ids: list[int] = []
        for chunk, special_id in self._split_special(text):
            if isinstance(special_id, list):
                ids.extend(special_id)
                continue
            if special_id is not None:
                ids.append(special_id)
                continue
            # NFC, then lower case character by character, with the reference's Unicode tables
            normal = rust_unicode.lowercase(rust_unicode.nfc(chunk))
            for piece in split_pieces(normal):
                ids.extend(self.bpe(piece))
        return ids

    def __call__(self, prompts: list[str]) -> np.ndarray:
        """(len(prompts), max_length) int64 ids: bos, text (truncated), eos, padding."""
        out = np.full((len(prompts), self.max_length), self.pad_id, dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids = [self.bos_id, *self.encode_text(prompt)[: self.max_length - 2], self.eos_id]
            out[row, : len(ids)] = ids
        return out

    def _split_special(self, text: str) -> list[tuple[str, int | None]]:
        """Text chunks and special tokens, in order (special tokens match case-sensitively)."""
        parts: list[tuple[str, int | None]] = [(text, None)]
        # longest first, so that a token never matches inside a longer added token
        tokens = {**self.special, **self.added}
        for token in sorted(tokens, key=len, reverse=True):
            token_id = tokens[token]
            split: list[tuple[str, int | None]] = []
            for chunk, cid in parts:
                if cid is not None:
                    split.append((chunk, cid))
                    continue
                for k, segment in enumerate(chunk.split(token)):
                    if k:
                        split.append((token, token_id))
                    split.append((segment, None))
            parts = split
        return [(chunk, cid) for chunk, cid in parts if cid is not None or chunk]


def _read_vocab_and_merges(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """From vocab.json + merges.txt (what SD folders hold), else from the tokenizer.json that
    transformers 5 writes alone (its merges are "a b" strings or [a, b] pairs)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {folder}")
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        merges = [line.split() for line in lines if line and not line.startswith("#version")]
    elif (folder / "tokenizer.json").is_file():
        model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
        vocab = model["vocab"]
        merges = [m.split() if isinstance(m, str) else m for m in model["merges"]]
    else:
        raise FileNotFoundError(
            f"no CLIP vocabulary in {folder}: expected vocab.json and merges.txt, or tokenizer.json"
        )
    return vocab, [tuple(m) for m in merges]


@lru_cache(maxsize=1)
def _shipped_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """The vocabulary in the order of SD's vocab.json: the byte characters, the same with
    `</w>`, one token per merge (the first CLIP_MERGES lines after the header), then
    <|startoftext|> and <|endoftext|>."""
    with gzip.open(SHIPPED_BPE_FILE, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : 1 + CLIP_MERGES])
    tokens = list(byte_to_char().values())
    tokens += [token + END_OF_WORD for token in tokens]
    tokens += ["".join(pair) for pair in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def _token_text(value) -> str:
    """Special tokens are saved as strings or as AddedToken dicts {"content": ...}."""
    return value["content"] if isinstance(value, dict) else str(value)
