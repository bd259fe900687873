"""New prompt tokens with their own embedding rows (textual inversion, pivotal tuning), for any
text encoder whose tokenizer keeps an `added` table.

A token of n vectors becomes n new rows at the end of the token embedding table and n new ids;
the tokenizer matches the token as typed (case-sensitively, like a special token) before its
normal splitting, so it works in prompts, negative prompts and WebUI emphasis alike. The
original rows are never touched, so removing the tokens gives the model back exactly.
"""

from __future__ import annotations

import re

import numpy as np


class AddedTokens:
    """`add_tokens` / `remove_tokens` for a TextEncoder. The class provides `tokenizer` (with
    `added: dict[str, list[int]]` and `has_token(text)`), `config["vocab_size"]` (the rows the
    model ships), `runner` (its paddiff.execution.Network), `token_embedding()` (the Paddle
    Embedding of its token rows) and `_replace_token_embedding(layer)`."""

    def add_tokens(self, token: str, vectors) -> None:
        """`vectors` [n, hidden] become n new rows of the token embedding, and `token` in a
        prompt their ids (paddiff.lora.textual_inversion)."""
        vectors = np.asarray(vectors, np.float32)
        table = self._token_table()
        if vectors.ndim != 2 or not len(vectors) or vectors.shape[1] != table.shape[1]:
            raise ValueError(
                f"{token!r}: vectors of shape {vectors.shape}, but this text encoder's token "
                f"rows are [n, {table.shape[1]}]"
            )
        if not token or token != token.strip():
            raise ValueError(f"{token!r}: a new token must be non-empty, without outer spaces")
        if self.tokenizer.has_token(token):
            raise ValueError(f"{token!r} is already a token of this tokenizer; pick another name")
        if token in self.tokenizer.added:
            raise ValueError(f"an embedding is already loaded as {token!r}")
        first = table.shape[0]
        self._set_token_table(np.concatenate([table, vectors]))
        self.tokenizer.added[token] = list(range(first, first + len(vectors)))

    def remove_tokens(self, tokens=None) -> None:
        """Remove added tokens (all of them by default); the ones left are renumbered in order."""
        added = self.tokenizer.added
        tokens = list(added) if tokens is None else list(tokens)
        unknown = [t for t in tokens if t not in added]
        if unknown:
            raise ValueError(
                f"no added token {', '.join(map(repr, unknown))}; added: "
                f"{', '.join(map(repr, added)) or 'none'}"
            )
        keep = np.ones(self._token_table().shape[0], bool)
        for token in tokens:
            keep[added.pop(token)] = False
        self._set_token_table(self._token_table()[keep])
        next_id = int(self.config["vocab_size"])
        for token in list(added):
            count = len(added[token])
            added[token] = list(range(next_id, next_id + count))
            next_id += count

    def _token_table(self) -> np.ndarray:
        self.runner.restore_weights()  # a static runner may have handed them to its program
        return self.token_embedding().weight.numpy()

    def _set_token_table(self, table: np.ndarray) -> None:
        from paddle import nn

        embedding = nn.Embedding(table.shape[0], table.shape[1])
        embedding.weight.set_value(np.ascontiguousarray(table))
        self._replace_token_embedding(embedding)
        self.runner.weights_changed()  # another table shape: a static program is re-exported


def split_pattern(tokens) -> re.Pattern:
    """A pattern whose `re.split` gives text and whole tokens in turn (odd items are tokens);
    longest first, so that a token never matches inside a longer one."""
    longest_first = sorted(tokens, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")


class TokenSplitter:
    """`split_pattern` of a tokenizer's special tokens and its `added` table, rebuilt when the
    added tokens change."""

    def __init__(self, special):
        self.special = list(special)
        self._key: tuple | None = None
        self._pattern: re.Pattern | None = None

    def __call__(self, added: dict) -> re.Pattern:
        key = tuple(added)
        if key != self._key:
            self._key, self._pattern = key, split_pattern([*self.special, *added])
        return self._pattern
