"""Programs exported for converters: plain ops that OpenVINO's and ONNX's importers know.

paddiff's ordinary export uses Paddle-only ops where they are faster under Paddle Inference
(`self_dp_attention`, the fused AVX-512 self-attention: `export.fused_self_attention_supported`).
A runtime back end that converts the program (OpenVINO) declares `program_variant = "portable"`,
and the export cache then exports its programs inside `portable_export()`, into their own cache
folder (`<component>-<shapes>-portable`), so the two kinds of program never mix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

PORTABLE = "portable"
_state = threading.local()


@contextmanager
def program_variant(variant: str | None) -> Iterator[None]:
    """Trace the networks exported inside this block as `variant` asks (None: the ordinary
    export; "portable": no Paddle-only fused ops)."""
    if variant not in (None, PORTABLE):
        raise ValueError(f"unknown program variant {variant!r}; variants: None, {PORTABLE!r}")
    previous = getattr(_state, "variant", None)
    _state.variant = variant
    try:
        yield
    finally:
        _state.variant = previous


def exporting_portable() -> bool:
    """Whether the export being traced in this thread must avoid Paddle-only ops."""
    return getattr(_state, "variant", None) == PORTABLE
