"""How networks run: one package owns execution, so components only declare their networks.

A component builds a `Network(name, layer, inputs, settings)` for each Paddle Layer it runs,
returns them from `networks()`, and calls them with NumPy arrays. Everything else lives here:

- `modes.py`     the dynamic / static / "auto" choice and `set_execution`, which applies it
- `network.py`   `Network`: runs a Layer in the dynamic graph or as an exported program, hands
                 the Layer's weights to the program and back
- `export.py`    `InputSpec`, tracing a Layer to a saved program, reading its weights back
- `cache.py`     exported programs on disk, keyed by the model's fingerprint and input shapes
- `runtimes.py`  the runtime back ends that run saved programs (Paddle Inference today)
- `predictor.py` the Paddle Inference back end: oneDNN, threads, precision (fp32 / bf16)
- `heap.py`      glibc heap settings that keep a run's freed activations for the next run
- `deferred.py`  start-up with cached programs: weights checked but not read, keys remembered
- `param_file.py`, `live_weights.py`  a program's parameter file tensor by tensor; the changed
                 copy a LoRA runs with (no copy of the model in memory)
- `quiet.py`     Paddle's native log lines kept off the user's stderr

Importing this package imports Paddle; `paddiff` itself stays cheap to import.
"""

from paddiff.execution.cache import ExportCache, default_cache_dir
from paddiff.execution.export import InputSpec
from paddiff.execution.modes import (
    AUTO_STATIC_MIN_PARAMETERS,
    EXECUTION_MODES,
    networks_of,
    resolve_execution,
    set_execution,
)
from paddiff.execution.network import Network
from paddiff.execution.predictor import PRECISIONS, resolve_precision

__all__ = [
    "AUTO_STATIC_MIN_PARAMETERS",
    "EXECUTION_MODES",
    "PRECISIONS",
    "ExportCache",
    "InputSpec",
    "Network",
    "default_cache_dir",
    "networks_of",
    "resolve_execution",
    "resolve_precision",
    "set_execution",
]
