"""Pivotal tuning (`--new-token TOKEN[=INIT]`): new prompt tokens whose embedding rows train
together with the LoRA, the rest of the text encoder frozen.

Why: a LoRA can only re-purpose the tokens a caption already has. When the new concept's word
is unknown to the tokenizer ([UNK], shared with every other unknown word) or splits into
letter pieces that other words use too, the LoRA must teach those tokens a new meaning, and
prompts that use them for something else change with it. A token of its own gives the concept
a place in the text encoder's input that nothing else uses (textual inversion, Gal et al. 2022;
trained with the LoRA as in cloneofsimo's pivotal tuning and diffusers' advanced DreamBooth
LoRA script).

How: the text encoder gets the tokens with `add_tokens` (so tokenization is exactly the
pipeline's), and a forward post-hook on its token embedding looks the new ids up in one
trainable parameter instead of the frozen table. The original rows never get a gradient.
"""

from __future__ import annotations

import numpy as np
from paddiff.lora.files import BUNDLE_PREFIX, BUNDLE_SUFFIX  # A1111's bundled-embedding keys


def parse(spec: str) -> tuple[str, str | None]:
    """TOKEN or TOKEN=INIT (words) -> (token, the init words or None)."""
    token, sep, init = spec.partition("=")
    token, init = token.strip(), init.strip()
    if not token:
        raise ValueError(f"--new-token {spec!r}: give TOKEN or TOKEN=INIT")
    if "." in token:  # A1111 splits bundle_emb.<token>.<vector key> at the first dot
        raise ValueError(f"--new-token {token!r}: a token cannot contain '.'")
    if sep and not init:
        raise ValueError(f"--new-token {spec!r}: nothing after '='")
    return token, init or None


class NewTokens:
    """The run's new tokens: one trainable row each, hooked into the text encoder."""

    def __init__(self, specs: list[str], text_encoder, captions: list[str]):
        import paddle
        import paddle.nn.functional as F

        if not hasattr(text_encoder, "add_tokens"):
            raise ValueError(
                f"--new-token: the text encoder {type(text_encoder).__name__} cannot take new "
                "tokens (it has no add_tokens method)"
            )
        parsed = [parse(spec) for spec in specs]
        tokens = [token for token, _ in parsed]
        repeated = sorted({t for t in tokens if tokens.count(t) > 1})
        if repeated:
            raise ValueError(f"--new-token {', '.join(map(repr, repeated))} given twice")
        unused = [t for t in tokens if not any(t in caption for caption in captions)]
        if unused:
            raise ValueError(
                f"--new-token {', '.join(map(repr, unused))}: in no caption, so it would never "
                "train; write it in the captions where the new concept is"
            )
        self.encoder = text_encoder
        table = text_encoder.token_embedding().weight.numpy()
        initial = np.stack([self._initial_row(table, token, init) for token, init in parsed])
        for token, row in zip(tokens, initial, strict=True):
            text_encoder.add_tokens(token, row[None])  # refuses a token the vocabulary has
        self.tokens = tokens
        self.first = len(table)  # ids first .. first + n - 1, in the order given
        self.rows = paddle.create_parameter(
            list(initial.shape),
            "float32",
            default_initializer=paddle.nn.initializer.Assign(initial.astype(np.float32)),
        )
        self.rows.stop_gradient = False
        self.parameters = [self.rows]
        first = self.first

        def look_up(layer, inputs, output):
            # the frozen rows up to `first`, then the trained ones: only they get gradients
            table = paddle.concat([layer.weight[:first].detach(), self.rows])
            return F.embedding(inputs[0], table)

        self._hook = text_encoder.token_embedding().register_forward_post_hook(look_up)

    def _initial_row(self, table: np.ndarray, token: str, init: str | None) -> np.ndarray:
        """The mean row of INIT's tokens, or of the whole vocabulary when no INIT is given."""
        if init is None:
            return table.mean(axis=0)
        tokenizer = self.encoder.tokenizer
        ids = tokenizer.text_ids(init) if hasattr(tokenizer, "text_ids") else None
        if ids is None:
            ids = list(tokenizer.encode_text(init))
        unknown = getattr(tokenizer, "unk_id", None)
        if not ids or unknown in ids:
            raise ValueError(
                f"--new-token {token}={init}: the tokenizer does not know {init!r} "
                f"(ids {ids}); start from words it has"
            )
        return table[ids].mean(axis=0)

    def vectors(self) -> dict[str, np.ndarray]:
        """token -> its trained rows [1, hidden]."""
        rows = self.rows.numpy()
        return {token: rows[i : i + 1].copy() for i, token in enumerate(self.tokens)}

    def state(self) -> dict[str, np.ndarray]:
        return {f"tokens/{token}": row for token, row in self.vectors().items()}

    def set_state(self, state: dict) -> None:
        missing = [key for key in self.state() if key not in state]
        if missing:
            raise ValueError(f"the resume file lacks the rows of {', '.join(missing)}")
        self.rows.set_value(np.concatenate([np.asarray(state[k]) for k in self.state()]))

    def bundle(self) -> dict[str, np.ndarray]:
        """The rows as A1111 reads embeddings bundled in a LoRA file."""
        return {BUNDLE_PREFIX + t + BUNDLE_SUFFIX: v for t, v in self.vectors().items()}
