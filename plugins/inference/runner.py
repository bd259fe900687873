"""Run a network's `forward` either in Paddle's dynamic graph or as an exported program."""

from __future__ import annotations

import inspect

import numpy as np
import paddle
from paddiff.plugins.inference.cache import ExportCache, fingerprint
from paddiff.plugins.inference.export import InputSpec

EXECUTION_MODES = ("dynamic", "static")


class GraphRunner:
    """Calls `layer.forward` with NumPy arrays and returns a NumPy array.

    In "dynamic" mode it runs the Layer directly (what training and debugging want). In "static"
    mode the first call for each input shape (batch left dynamic) exports the Layer through
    `cache` and later calls run the exported program with Paddle Inference, which on CPU is
    several times faster than the dynamic graph (see docs/performance.md).
    """

    def __init__(self, layer: paddle.nn.Layer, component: str):
        self.layer = layer
        self.component = component
        self.input_names = list(inspect.signature(layer.forward).parameters)
        self.mode = "dynamic"
        self._cache: ExportCache | None = None
        self._model_key: str | None = None

    def use_static(self, cache: ExportCache) -> None:
        self.mode, self._cache = "static", cache

    def use_dynamic(self) -> None:
        self.mode, self._cache = "dynamic", None

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        if self.mode == "dynamic":
            with paddle.no_grad():
                return self.layer(*(paddle.to_tensor(a) for a in arrays)).numpy()
        if self._model_key is None:  # hashing samples every parameter: do it once
            self._model_key = fingerprint(self.layer)
        specs = [
            InputSpec(name, (None, *a.shape[1:]), str(a.dtype))
            for name, a in zip(self.input_names, arrays, strict=True)
        ]
        predictor = self._cache.predictor(self.layer, self._model_key, self.component, specs)
        return predictor(*arrays)[0]
