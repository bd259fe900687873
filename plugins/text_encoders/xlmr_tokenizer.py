"""XLM-RoBERTa's tokenizer: a SentencePiece model with fairseq's id layout.

paddlenlp 2.8.1 has no XLM-R tokenizer, so this reads `sentencepiece.bpe.model` with the
`sentencepiece` package (the same library that trained it). XLM-R was trained in fairseq, whose
dictionary puts <s>=0, <pad>=1, </s>=2, <unk>=3 first and then every SentencePiece piece after the
first three (<unk>, <s>, </s>), so piece p has id p + 1 and <mask> comes last. Special tokens
written in the prompt ("<mask>") are kept whole; the text between them is encoded piece by piece,
exactly as transformers' XLMRobertaTokenizer does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from paddiff.plugins.text_encoders._files import read_json, token_text

FAIRSEQ_OFFSET = 1  # fairseq inserted <pad> before the pieces
BOS, PAD, EOS, UNK = 0, 1, 2, 3


class XLMRobertaTokenizer:
    """Text -> ids for XLM-R: <s> text </s> then <pad>s."""

    def __init__(self, model_file: str | Path, special_tokens: dict[str, str] | None = None):
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        if (self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (0, 1, 2):
            raise ValueError(
                f"{model_file}: expected <unk>, <s>, </s> as pieces 0, 1, 2 (XLM-R layout)"
            )
        names = {
            "bos_token": "<s>",
            "pad_token": "<pad>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
        }
        names.update({k: v for k, v in (special_tokens or {}).items() if k in names})
        self.special_ids = {names["bos_token"]: BOS, names["pad_token"]: PAD}
        self.special_ids.update({names["eos_token"]: EOS, names["unk_token"]: UNK})
        self.special_ids[(special_tokens or {}).get("mask_token", "<mask>")] = self.vocab_size - 1
        longest_first = sorted(self.special_ids, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")

    @property
    def vocab_size(self) -> int:
        """Pieces, plus <pad> and <mask> that fairseq added."""
        return self.sp.get_piece_size() + 2

    @classmethod
    def from_folder(cls, folder: str | Path) -> XLMRobertaTokenizer:
        folder = Path(folder)
        model_file = folder / "sentencepiece.bpe.model"
        if not model_file.is_file():
            raise FileNotFoundError(
                f"{folder}: no sentencepiece.bpe.model (an XLM-R tokenizer folder needs one)"
            )
        config = read_json(folder / "tokenizer_config.json")
        specials = {k: token_text(v) for k, v in config.items() if k.endswith("_token")}
        return cls(model_file, specials)

    def text_ids(self, text: str) -> list[int]:
        """Ids of `text` without <s> / </s>."""
        ids = []
        # re.split with a capturing group: odd items are the special tokens themselves.
        for index, part in enumerate(self._special.split(text)):
            if index % 2:
                ids.append(self.special_ids[part])
            elif part:
                pieces = self.sp.encode(part)
                ids += [UNK if p == self.sp.unk_id() else p + FAIRSEQ_OFFSET for p in pieces]
        return ids

    def __call__(self, prompts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask), int64 (batch, max_length); long text is cut at the end."""
        ids = np.full((len(prompts), max_length), PAD, dtype=np.int64)
        mask = np.zeros((len(prompts), max_length), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            tokens = [BOS, *self.text_ids(prompt)[: max_length - 2], EOS]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask
