"""Runtime back ends: what runs an exported program.

Back ends are plugins of the `paddiff.runtimes` entry-point group (`paddiff plugins list --kind
runtimes`); the built-in ones are Paddle Inference (`paddle-inference`: oneDNN on CPU, TensorRT
opt-in on GPU; `predictor.py`) and OpenVINO (`openvino`: `paddiff.plugins.runtimes.openvino`,
with the `paddiff[openvino]` extra). A back end is a class with a `name` and `load(prefix,
threads, precision)` returning a callable that takes NumPy arrays in input order and returns a
list of NumPy arrays (`paddiff.interfaces.Runtime`). `ExportCache` asks the back end
`get_runtime()` returns.

The choice is per process: `runtime=` of `load_pipeline` / `set_execution`, `--runtime` on the
command line, else $PADDIFF_RUNTIME, else "auto" (see `auto_runtime`). A back end that cannot run
here (its package is not installed) falls back to Paddle Inference with a warning saying why, so
a setting shared between machines never stops generation; an unknown name is an error.
"""

from __future__ import annotations

import os
import warnings

RUNTIME_ENV = "PADDIFF_RUNTIME"
FALLBACK_RUNTIME = "paddle-inference"


class PaddleInference:
    """Paddle Inference on the program `paddle.jit.save` wrote."""

    name = "paddle-inference"
    program_variant = None  # the ordinary export, with Paddle's fused CPU attention

    @staticmethod
    def unavailable() -> str | None:
        return None  # Paddle itself is always there

    def load(self, prefix, threads: int | None = None, precision: str | None = None):
        from paddiff.execution.predictor import Predictor

        return Predictor(prefix, threads=threads, precision=precision)


def resolve_runtime_name(name: str | None = None) -> str:
    """The back end asked for: the argument, else $PADDIFF_RUNTIME, else "auto"."""
    return name or os.environ.get(RUNTIME_ENV) or "auto"


#: What "auto" picks, per device: the first back end of the list that can run here.
#: Why Paddle Inference stays first on CPU (docs/performance.md, "Runtime back ends"): OpenVINO
#: is faster on a quiet machine (SD 1.5 UNet call 1.72 vs 2.00 s f32, whole process 50 vs 57 s),
#: but a model's first run converts every network, each LoRA change converts again, and its
#: bf16 error is 4.5x Paddle's. So OpenVINO stays opt-in; this list is the one line to change.
AUTO_PREFERENCE = {"cpu": (FALLBACK_RUNTIME,), "gpu": (FALLBACK_RUNTIME,)}


def auto_runtime() -> str:
    """The default back end of this machine: the first of `AUTO_PREFERENCE` that can run here
    (Paddle Inference today, on CPU and GPU)."""
    from paddiff.execution.predictor import _gpu_available
    from paddiff.registry import PluginError, default_registry

    for name in AUTO_PREFERENCE["gpu" if _gpu_available() else "cpu"]:
        try:
            runtime_class = default_registry().get("runtimes", name)
        except PluginError:  # not installed, or broken: the next one
            continue
        unavailable = getattr(runtime_class, "unavailable", None)
        if not (unavailable and unavailable()):
            return name
    return FALLBACK_RUNTIME


def runtime_names() -> list[str]:
    from paddiff.registry import default_registry

    return default_registry().names("runtimes")


def check_runtime_name(name: str | None = None) -> str:
    """The back end asked for (`resolve_runtime_name`), checked against the installed ones, so
    a misspelt name fails before a model loads."""
    from paddiff.registry import default_registry

    asked = resolve_runtime_name(name)
    known = default_registry().names("runtimes")
    if asked != "auto" and asked not in known and ":" not in asked:
        source = "runtime=" if name else f"${RUNTIME_ENV}"
        raise ValueError(f"{source} {asked!r} is not a runtime; runtimes: auto, {', '.join(known)}")
    return asked


def get_runtime(name: str | None = None):
    """The runtime back end called `name` (see the module docstring for the default), an
    instance. A known back end that cannot run here gives Paddle Inference and a warning."""
    from paddiff.registry import UnknownPluginError, default_registry

    asked = resolve_runtime_name(name)
    chosen = auto_runtime() if asked == "auto" else asked
    try:
        runtime_class = default_registry().get("runtimes", chosen)
    except UnknownPluginError:
        source = "runtime=" if name else f"${RUNTIME_ENV}"
        raise ValueError(
            f"{source} {asked!r} is not a runtime; runtimes: auto, {', '.join(runtime_names())}"
        ) from None
    unavailable = getattr(runtime_class, "unavailable", None)
    reason = unavailable() if unavailable else None
    if reason:
        warnings.warn(
            f"paddiff: runtime {chosen!r} cannot run here ({reason}); running exported programs "
            f"with {FALLBACK_RUNTIME} instead",
            stacklevel=2,
        )
        return PaddleInference()
    return runtime_class()
