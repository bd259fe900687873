"""Exported programs on disk, keyed by model fingerprint, component and input shapes."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import paddiff
import paddle
from paddiff.plugins.inference.export import InputSpec, export_layer, program_files
from paddiff.plugins.inference.predictor import Predictor


def default_cache_dir() -> Path:
    """`$PADDIFF_CACHE_DIR`, else `$XDG_CACHE_HOME/paddiff`, else `~/.cache/paddiff`."""
    if os.environ.get("PADDIFF_CACHE_DIR"):
        return Path(os.environ["PADDIFF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paddiff"


def fingerprint(layer: paddle.nn.Layer) -> str:
    """A short hash that changes when the layer's weights, structure or Paddle version change.

    Hashing every byte of a 3 GB UNet takes seconds, so it hashes every parameter's name, shape and
    dtype, plus an evenly strided sample of up to 4096 of its values: any retrained or differently
    converted model changes the sample.
    """
    digest = hashlib.sha256(f"paddle {paddle.__version__} paddiff {paddiff.__version__}".encode())
    digest.update(type(layer).__qualname__.encode())
    for name, param in layer.state_dict().items():
        values = param.numpy().reshape(-1)
        step = max(1, values.size // 4096)
        digest.update(f"{name}{list(param.shape)}{param.dtype}".encode())
        digest.update(np.ascontiguousarray(values[::step]).tobytes())
    return digest.hexdigest()[:16]


class ExportCache:
    """Exports a layer the first time a (model, component, shapes) key is asked for; reuses it after."""

    def __init__(self, root: str | Path | None = None, threads: int | None = None):
        self.root = Path(root) if root else default_cache_dir() / "exported"
        self.threads = threads
        self._loaded: dict[Path, Predictor] = {}
        self._lock = threading.Lock()

    def prefix(self, model_key: str, component: str, specs: list[InputSpec]) -> Path:
        shapes = "_".join("x".join("N" if d is None else str(d) for d in s.shape) for s in specs)
        return self.root / model_key / f"{component}-{shapes}" / "program"

    def predictor(
        self, layer: paddle.nn.Layer, model_key: str, component: str, specs: list[InputSpec]
    ) -> Predictor:
        prefix = self.prefix(model_key, component, specs)
        with self._lock:
            if prefix not in self._loaded:
                program, params = program_files(prefix)
                if not (program.exists() and params.exists()):
                    export_layer(layer, specs, prefix)
                self._loaded[prefix] = Predictor(prefix, threads=self.threads)
            return self._loaded[prefix]
