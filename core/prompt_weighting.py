"""WebUI-style prompt emphasis and prompts longer than the text encoder's window.

Syntax, as AUTOMATIC1111's WebUI users write it:

    (word)        weight x 1.1         ((word)) x 1.21, and so on
    [word]        weight / 1.1
    (word:1.3)    weight x 1.3         nesting multiplies
    \\( \\) \\[ \\]   literal brackets
    BREAK         start a new chunk here

The prompt is cut into chunks of at most `max_length - 2` tokens at word boundaries; each chunk is
encoded on its own (with its own start and end tokens) and the chunks' embeddings are concatenated
along the sequence axis, which cross-attention accepts at any length. Each token's embedding is
multiplied by its weight, and the chunk is then rescaled to its original mean, so that emphasis
changes the balance between words rather than the overall magnitude (WebUI's rule).
"""

from __future__ import annotations

import re

import numpy as np

ROUND_UP, SQUARE_DOWN = 1.1, 1 / 1.1

_TOKEN = re.compile(
    r"""\\[()\[\]\\]          # an escaped bracket or backslash
      | \(|\[                 # opening brackets
      | :\s*([+-]?[.\d]+)\s*\)  # ":1.3)" closes a round bracket with an explicit weight
      | \)|\]                 # closing brackets
      | \bBREAK\b             # chunk break
      | [^\\()\[\]:B]+|.      # plain text (B and : alone are plain too)
    """,
    re.VERBOSE,
)

BREAK = object()  # marker fragment

_CJK = "\u3000-\u9fff\uac00-\ud7af\uff00-\uffef"  # CJK symbols, ideographs, Hangul, full-width
_WORD = re.compile(rf"\s*[{_CJK}]|\s*[^\s{_CJK}]+|\s+$")


def parse_weights(text: str) -> list[tuple[str, float]]:
    """[(text, weight), ...] for a prompt in WebUI syntax; ("", BREAK-marked) entries aside, the
    texts concatenate to the prompt without its brackets."""
    fragments: list[list] = []  # [text, weight] pairs, mutable while brackets are open
    round_open: list[int] = []  # index into fragments where each open bracket started
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            if fragment[0] is not BREAK:
                fragment[1] *= factor

    for match in _TOKEN.finditer(text):
        token, explicit = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            fragments.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(fragments))
        elif token == "[":
            square_open.append(len(fragments))
        elif explicit is not None and round_open:
            scale(round_open.pop(), _number(explicit))
        elif token == ")" and round_open:
            scale(round_open.pop(), ROUND_UP)
        elif token == "]" and square_open:
            scale(square_open.pop(), SQUARE_DOWN)
        elif token == "BREAK":
            fragments.append([BREAK, 1.0])
        else:
            fragments.append([token, 1.0])
    for start in round_open:  # unclosed brackets still apply to the rest (as in WebUI)
        scale(start, ROUND_UP)
    for start in square_open:
        scale(start, SQUARE_DOWN)
    return _merge(fragments)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0


def _merge(fragments: list[list]) -> list[tuple]:
    merged: list[list] = []
    for text, weight in fragments:
        if text is not BREAK and merged and merged[-1][0] is not BREAK and merged[-1][1] == weight:
            merged[-1][0] += text
        elif text is BREAK or text:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged]


def encode_weighted(encoder, text: str) -> np.ndarray:
    """(1, chunks * max_length, hidden) embeddings of a prompt in WebUI syntax."""
    chunks = _chunks(encoder, parse_weights(text))
    return np.concatenate([_encode_chunk(encoder, words) for words in chunks], axis=1)


def pad_to_same_length(cond: np.ndarray, uncond: np.ndarray, empty: np.ndarray):
    """Append empty-prompt chunks to the shorter of the two, so they can be batched."""
    while cond.shape[1] < uncond.shape[1]:
        cond = np.concatenate([cond, empty], axis=1)
    while uncond.shape[1] < cond.shape[1]:
        uncond = np.concatenate([uncond, empty], axis=1)
    return cond, uncond


def _chunks(encoder, fragments) -> list[list[tuple[str, float, int]]]:
    """Words (text with its leading space, weight, token count) packed into windows."""
    window = int(encoder.max_length) - 2
    words = [
        (piece, weight) if text is not BREAK else (BREAK, weight)
        for text, weight in fragments
        for piece in ([BREAK] if text is BREAK else _words(text))
    ]
    counts = _token_counts(encoder, [w for w, _ in words if w is not BREAK])
    chunks: list[list] = [[]]
    used = 0
    for word, weight in words:
        if word is BREAK:
            chunks.append([])
            used = 0
            continue
        count = next(counts)
        if used + count > window and chunks[-1]:
            chunks.append([])
            used = 0
        chunks[-1].append((word, weight, count))
        used += count
    return [chunk for chunk in chunks if chunk] or [[]]


def _words(text: str) -> list[str]:
    """Pieces that tokenize independently: words with their leading space, and single CJK
    characters (whose tokenizers split them apart anyway)."""
    return _WORD.findall(text)


def _token_counts(encoder, words: list[str]):
    if not words:
        return iter(())
    ids = np.asarray(encoder.tokenize([w.strip() or w for w in words]))
    end = np.asarray(encoder.tokenize([""]))[0][1]
    counts = []
    for row in ids:
        ends = np.nonzero(row[1:] == end)[0]
        counts.append(int(ends[0]) if len(ends) else len(row) - 2)
    return iter(counts)


def _encode_chunk(encoder, words: list[tuple[str, float, int]]) -> np.ndarray:
    text = "".join(word for word, _, _ in words).strip()
    embeddings = np.asarray(encoder.encode([text]), dtype=np.float32)
    weights = np.ones(embeddings.shape[1], dtype=np.float32)
    position = 1  # after the start token
    for _, weight, count in words:
        weights[position : position + count] = weight
        position += count
    if np.all(weights == 1.0):
        return embeddings
    original_mean = embeddings.mean()
    weighted = embeddings * weights[None, :, None]
    return (weighted * (original_mean / weighted.mean())).astype(np.float32)
