"""Runtime back ends: what runs an exported program.

There is one today, Paddle Inference (oneDNN on CPU, TensorRT opt-in on GPU; `predictor.py`).
A back end is an object with a `name` and `load(prefix, threads, precision)` returning a callable
that takes NumPy arrays in input order and returns a list of NumPy arrays. `ExportCache` asks the
back end `get_runtime()` returns, so this function is the one seam where a `paddiff.runtimes`
entry-point group (OpenVINO or ONNX Runtime through paddle2onnx, for example) would plug in:
the names below would then be the built-in entries of that group.
"""

from __future__ import annotations

DEFAULT_RUNTIME = "paddle-inference"


class PaddleInference:
    """Paddle Inference on the program `paddle.jit.save` wrote."""

    name = "paddle-inference"

    def load(self, prefix, threads: int | None = None, precision: str | None = None):
        from paddiff.execution.predictor import Predictor

        return Predictor(prefix, threads=threads, precision=precision)


BUILT_IN_RUNTIMES = {PaddleInference.name: PaddleInference}


def get_runtime(name: str | None = None):
    """The runtime back end called `name` (default: Paddle Inference)."""
    name = name or DEFAULT_RUNTIME
    if name not in BUILT_IN_RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; runtimes: {', '.join(BUILT_IN_RUNTIMES)}")
    return BUILT_IN_RUNTIMES[name]()
