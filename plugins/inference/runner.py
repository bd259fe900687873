"""Run a network's `forward` either in Paddle's dynamic graph or as an exported program."""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import paddle
from paddiff.plugins.inference.cache import ExportCache, fingerprint
from paddiff.plugins.inference.export import (
    InputSpec,
    load_exported_weights,
    names_file,
    program_files,
)
from paddiff.plugins.inference.heap import reusing_heap
from paddiff.plugins.inference.predictor import Predictor

#: "auto" is static for networks of at least AUTO_STATIC_MIN_PARAMETERS parameters (with a fall-back
#: to the dynamic graph when one cannot be exported) and dynamic for smaller ones.
EXECUTION_MODES = ("auto", "static", "dynamic")
#: Below this, oneDNN's fixed costs per call outweigh what it saves: the embedded model's UNet
#: (1.7 M parameters) ran 8 steps in 0.35 s in the dynamic graph against 0.49-0.56 s exported,
#: while SD 1.5's (860 M) ran 1.7x faster exported (docs/performance.md).
AUTO_STATIC_MIN_PARAMETERS = 10_000_000
EXECUTION_ENV = "PADDIFF_EXECUTION"


def resolve_execution(execution: str | None = None) -> str:
    """The execution mode asked for: the argument, else $PADDIFF_EXECUTION, else "auto"."""
    mode = execution or os.environ.get(EXECUTION_ENV) or "auto"
    if mode not in EXECUTION_MODES:
        source = "execution=" if execution else f"${EXECUTION_ENV}"
        raise ValueError(f"{source} {mode!r} is not one of {', '.join(EXECUTION_MODES)}")
    return mode


class GraphRunner:
    """Calls `layer.forward` with NumPy arrays and returns NumPy arrays.

    In "dynamic" mode it runs the Layer directly (what training and debugging want). In "static"
    mode the first call exports the Layer through `cache` (or finds it there) and all calls run
    the exported program with Paddle Inference, which on CPU is several times faster than the
    dynamic graph (docs/performance.md). `specs` name the inputs in `forward`'s order; their
    `None` dimensions stay dynamic, so one program serves every batch size and image size.
    `settings` are the component's config values, part of the cache key with the weights.

    Memory: once the program is loaded, the Layer's copy of the weights the program holds is
    released, so the process keeps one plain copy of the model (the predictor's); oneDNN adds its
    own reordered copy on the first run, which cannot be avoided from outside Paddle. Going back
    to the dynamic graph reads the weights back from the exported program.
    """

    def __init__(
        self,
        layer: paddle.nn.Layer,
        component: str,
        specs: list[InputSpec],
        settings: dict | None = None,
    ):
        self.layer = layer
        self.settings = settings  # config values the computation depends on, for the cache key
        self.component = component
        self.specs = list(specs)
        self.mode = "dynamic"
        self._cache: ExportCache | None = None
        self._fallback = False
        self._model_key: str | None = None
        self._predictor: Predictor | None = None
        self._released_to = None  # the program prefix holding the weights the Layer gave up
        self._loading = threading.Lock()  # one export and one predictor, whatever the threads

    def use_static(self, cache: ExportCache, fallback: bool = False) -> None:
        """Run exported programs from `cache`; with `fallback`, a network that fails to export
        runs in the dynamic graph instead (with a warning) rather than raising."""
        if self._released_to is None:
            # Hash now, while the weights are here (a later use_static after dynamic-graph
            # training sees the new weights; once released, the key of the program stays).
            self._model_key = fingerprint(self.layer, self.settings)
        if cache is not self._cache:
            self._predictor = None
        self.mode, self._cache, self._fallback = "static", cache, fallback

    def parameter_count(self) -> int:
        """Parameters of the network (counted from shapes: right even once weights are released)."""
        return sum(int(np.prod(p.shape)) for p in self.layer.parameters())

    def export(self, cache: ExportCache) -> Path:
        """Make sure `cache` holds this runner's program (exporting it if not); its prefix."""
        self._restore_weights()
        key = fingerprint(self.layer, self.settings)
        return cache.program(self.layer, key, self.component, self.specs)

    def use_dynamic(self) -> None:
        self.mode, self._cache, self._predictor = "dynamic", None, None
        self._restore_weights()

    def restore_weights(self) -> None:
        """Give the Layer its weights back (read from the exported program) without leaving
        static mode, for code that calls the Layer's other methods (e.g. every hidden state
        of a text encoder); the process then holds them twice."""
        with self._loading:
            self._restore_weights()

    def __call__(self, *arrays: np.ndarray):
        if self.mode == "static":
            with self._loading:
                predictor = self._predictor or self._load_predictor()
            if predictor is not None:
                outputs = predictor(*arrays)
                return outputs[0] if len(outputs) == 1 else outputs
        with paddle.no_grad(), reusing_heap():
            outputs = self.layer(*(paddle.to_tensor(a) for a in arrays))
        if isinstance(outputs, (list, tuple)):
            return [o.numpy() for o in outputs]
        return outputs.numpy()

    def _load_predictor(self) -> Predictor | None:
        try:
            self._restore_weights()  # only if a program of another cache took them
            prefix = self._cache.program(self.layer, self._model_key, self.component, self.specs)
        except Exception as exc:
            if not self._fallback:
                raise
            warnings.warn(
                f"paddiff: could not export {self.component} ({type(exc).__name__}: {exc}); "
                "running it in the dynamic graph",
                stacklevel=3,
            )
            self.use_dynamic()
            return None
        if self._fallback and not _memory_allows(prefix):
            self.use_dynamic()
            return None
        self._release_weights(prefix)  # before loading, so two copies never coexist
        self._predictor = Predictor(
            prefix, threads=self._cache.threads, precision=self._cache.precision
        )
        return self._predictor

    def _release_weights(self, prefix) -> None:
        held = set(json.loads(names_file(prefix).read_text(encoding="utf-8")).values())
        for key, param in self.layer.named_parameters():
            if key in held:
                param._clear_data()
        self._released_to = prefix

    def _restore_weights(self) -> None:
        if self._released_to is None:
            return
        weights = load_exported_weights(self._released_to)
        params = dict(self.layer.named_parameters())
        for key, value in weights.items():
            params[key].set_value(value)
        self._released_to = None


def _memory_allows(prefix) -> bool:
    """Whether this machine has room for oneDNN's reordered copy of the program's weights (the
    predictor's plain copy replaces the Layer's). "auto" stays in the dynamic graph otherwise."""
    size = program_files(prefix)[1].stat().st_size
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return True  # not Linux: no way to tell, so do not refuse
    if available >= 1.25 * size:
        return True
    warnings.warn(
        f"paddiff: {available / 2**30:.1f} GiB of free memory is too little for the static "
        f"{Path(prefix).parent.name} ({size / 2**30:.1f} GiB of weights, held twice by oneDNN); "
        "running it in the dynamic graph",
        stacklevel=4,
    )
    return False


def runners_of(component) -> dict[str, GraphRunner]:
    """The GraphRunners a component runs its networks with, by attribute name."""
    return {k: v for k, v in vars(component).items() if isinstance(v, GraphRunner)}


def set_execution(runners: list[GraphRunner], mode: str, cache: ExportCache | None) -> None:
    """Switch a component's runners to `mode` ("auto", "static" or "dynamic")."""
    mode = resolve_execution(mode)
    for runner in runners:
        if mode == "dynamic" or (
            mode == "auto" and runner.parameter_count() < AUTO_STATIC_MIN_PARAMETERS
        ):
            runner.use_dynamic()
        else:
            runner.use_static(cache or ExportCache(), fallback=mode == "auto")
