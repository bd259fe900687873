"""Prompt encoding for the pipeline: the embedding cache, and a warning when a prompt is cut.

A text encoder reads a fixed window of tokens (77 for CLIP, including its start and end tokens),
so the end of a longer prompt is silently dropped by the tokenizer. The pipeline says so: it
counts the prompt's tokens with the encoder's own `tokenize` and warns when some are lost.
"""

from __future__ import annotations

import warnings

import numpy as np
from paddiff.prompt_cache import PromptCache


class PromptTruncatedWarning(UserWarning):
    """A prompt had more tokens than the text encoder reads; the rest was ignored."""


def encode_pair(
    encoder,
    prompt: str,
    negative_prompt: str | None,
    guidance: bool,
    cache: PromptCache,
    long_prompts: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(conditional, unconditional) embeddings, each (1, seq, hidden); the unconditional one is
    None when guidance is off. Cached by (encoder, prompt, negative prompt).

    With `long_prompts`, prompts use WebUI's emphasis syntax and may be longer than the
    encoder's window (see `paddiff.prompt_weighting`).
    """
    key = (encoder, prompt, negative_prompt if guidance else None, guidance, long_prompts)
    cached = cache.get(key)
    if cached is not None:
        return cached
    if long_prompts:
        value = _encode_weighted_pair(encoder, prompt, negative_prompt, guidance)
        cache.put(key, value)
        return value
    # One prompt per encoder call, so an embedding never depends on what else is in the batch.
    cond = encode_one(encoder, prompt)
    uncond = None
    if guidance:
        if negative_prompt:
            uncond = encode_one(encoder, negative_prompt)
        else:
            uncond = np.asarray(encoder.unconditional(1), dtype=np.float32)
    cache.put(key, (cond, uncond))
    return cond, uncond


def _encode_weighted_pair(encoder, prompt, negative_prompt, guidance):
    from paddiff.prompt_weighting import encode_weighted, pad_to_same_length

    cond = encode_weighted(encoder, prompt)
    if not guidance:
        return cond, None
    empty = np.asarray(encoder.unconditional(1), dtype=np.float32)
    uncond = encode_weighted(encoder, negative_prompt) if negative_prompt else empty
    return pad_to_same_length(cond, uncond, empty)


def encode_one(encoder, text: str) -> np.ndarray:
    warn_if_truncated(encoder, text)
    return np.asarray(encoder.encode([text]), dtype=np.float32)


def warn_if_truncated(encoder, text: str) -> None:
    window = int(encoder.max_length) - 2  # the start and end tokens take two places
    count = count_tokens(encoder, text)
    if count is not None and count > window:
        warnings.warn(
            f"prompt has {count} tokens but the text encoder reads only {window}; the end of it "
            f"is ignored: {text[:60]!r}{'...' if len(text) > 60 else ''}",
            PromptTruncatedWarning,
            stacklevel=4,
        )


def count_tokens(encoder, text: str) -> int | None:
    """Tokens in `text` without the start/end tokens (None if the tokenizer's layout is not the
    usual [start, tokens..., end, padding...]).

    An encoder may provide `count_tokens(text)` itself. Otherwise the count is read off
    `tokenize`: the position of the end token. A window filled to the end may hide more tokens,
    so such a text is split in two and counted piece by piece (exact for CLIP's and BERT's
    tokenizers, which split on spaces and around CJK characters before anything else).
    """
    own = getattr(encoder, "count_tokens", None)
    if callable(own):
        return int(own(text))
    empty = np.asarray(encoder.tokenize([""]))[0]
    if len(empty) < 3:
        return None
    return _count(encoder, text, end_token=empty[1], window=len(empty) - 2, depth=0)


def _count(encoder, text: str, end_token, window: int, depth: int) -> int:
    ids = np.asarray(encoder.tokenize([text]))[0]
    ends = np.nonzero(ids[1:] == end_token)[0]
    count = int(ends[0]) if len(ends) else window
    if count < window or depth > 32:
        return count
    head, tail = _split_in_two(text)
    if not head or not tail:
        return count
    return sum(_count(encoder, part, end_token, window, depth + 1) for part in (head, tail))


def _split_in_two(text: str) -> tuple[str, str]:
    """Split at the space nearest the middle; at the middle character if there is none."""
    middle = len(text) // 2
    spaces = [i for i, c in enumerate(text) if c.isspace()]
    if spaces:
        cut = min(spaces, key=lambda i: abs(i - middle))
        return text[:cut].strip(), text[cut:].strip()
    return text[:middle], text[middle:]
