"""A tiny grammar of phrasings: a node is a string, a list (the parts in order) or an `Alt`
(one of several), and can be sampled or fully enumerated.

The embedded model's captions (`phrasing`) and its held-out phrasings (`held_out_phrasings`) are
written with it, so that a test can enumerate every caption the training grammar can produce for
one set of attributes and check that no held-out phrasing is among them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np


class Alt(tuple):
    """One of the alternatives, chosen uniformly."""

    def __new__(cls, *options):
        return super().__new__(cls, options)


def opt(node) -> Alt:
    """The node or nothing."""
    return Alt("", node)


def sample(node, rng: np.random.Generator) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, Alt):
        return sample(node[rng.integers(len(node))], rng)
    return "".join(sample(part, rng) for part in node)


def expand(node) -> Iterator[str]:
    """Every string the node can produce (with repeats when two choices give the same text)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Alt):
        for option in node:
            yield from expand(option)
    else:
        for parts in itertools.product(*(list(expand(part)) for part in node)):
            yield "".join(parts)
