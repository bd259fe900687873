"""Exported programs on disk, keyed by model fingerprint, component and input shapes."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
from pathlib import Path

import numpy as np
import paddiff
import paddle
from paddiff.execution import cache_folder
from paddiff.execution.export import (
    InputSpec,
    export_layer,
    fused_self_attention_supported,
    names_file,
    program_files,
)
from paddiff.execution.portable import program_variant
from paddiff.execution.predictor import resolve_precision
from paddiff.execution.quiet import native_stderr_filtered
from paddiff.execution.runtimes import get_runtime


def default_cache_dir() -> Path:
    """`$PADDIFF_CACHE_DIR`, else `$XDG_CACHE_HOME/paddiff/exported`, else
    `~/.cache/paddiff/exported`. A folder written by `paddiff export` works as a cache too."""
    if os.environ.get("PADDIFF_CACHE_DIR"):
        return Path(os.environ["PADDIFF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paddiff" / "exported"


def fingerprint(layer: paddle.nn.Layer, settings: dict | None = None) -> str:
    """A short hash that changes when the layer's weights, structure, `settings` (the config
    values that change the computation but no weight, e.g. clip_skip), the source code of its
    layers or the Paddle version change.

    Hashing every byte of a 3 GB UNet takes seconds, so it hashes every parameter's name, shape and
    dtype, plus an evenly strided sample of up to 4096 of its values: any retrained or differently
    converted model changes the sample.
    """
    digest = hashlib.sha256(f"paddle {paddle.__version__} paddiff {paddiff.__version__}".encode())
    # which attention an export uses depends on the machine (AVX-512, GPU), so the key does too
    digest.update(f"fused attention {fused_self_attention_supported()}".encode())
    digest.update(type(layer).__qualname__.encode())
    digest.update(_source_digest(layer))
    digest.update(json.dumps(settings or {}, sort_keys=True, default=str).encode())
    for name, param in layer.state_dict().items():
        digest.update(f"{name}{list(param.shape)}{param.dtype}".encode())
        if not param._is_initialized():  # released to an exported program by another Network
            continue
        flat = param.reshape([-1])
        step = max(1, flat.shape[0] // 4096)
        digest.update(np.ascontiguousarray(flat[::step].numpy()).tobytes())
    return digest.hexdigest()[:16]


def _source_digest(layer: paddle.nn.Layer) -> bytes:
    """Hash of the files that define the layer's (non-Paddle) sublayer classes, so a program
    exported by an older version of the network code is never reused."""
    files = set()
    for sub in layer.sublayers(include_self=True):
        cls = type(sub)
        if not cls.__module__.startswith("paddle."):
            files.add(inspect.getsourcefile(cls))
    digest = hashlib.sha256()
    for file in sorted(f for f in files if f):
        digest.update(Path(file).read_bytes())
    return digest.digest()


class ExportCache:
    """Exports a layer the first time a (model, component, shapes) key is asked for; reuses it
    after, and loads programs with its runtime back end at its threads and precision.

    Several processes may share one cache folder: each export is written under a temporary name
    and renamed into place, so a reader sees a whole program or none. The folder is kept within
    a size limit (paddiff.execution.cache_folder).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        threads: int | None = None,
        precision: str | None = None,
        runtime: str | None = None,
    ):
        self.root = Path(root) if root else default_cache_dir()
        self.threads = threads
        # how predictors run the programs ("fp32" or "bf16"); the programs themselves are the same
        self.precision = resolve_precision(precision)
        self.runtime = get_runtime(runtime)
        self._lock = threading.Lock()

    def prefix(self, model_key: str, component: str, specs: list[InputSpec]) -> Path:
        shapes = "_".join("x".join("N" if d is None else str(d) for d in s.shape) for s in specs)
        # a back end that converts programs gets its own export of them (paddiff.execution.portable)
        variant = getattr(self.runtime, "program_variant", None)
        folder = f"{component}-{shapes}" + (f"-{variant}" if variant else "")
        return self.root / model_key / folder / "program"

    def has(self, model_key: str, component: str, specs: list[InputSpec]) -> bool:
        prefix = self.prefix(model_key, component, specs)
        return all(f.exists() for f in (*program_files(prefix), names_file(prefix)))

    def program(
        self, layer: paddle.nn.Layer, model_key: str, component: str, specs: list[InputSpec]
    ) -> Path:
        """The prefix of the exported program for this key, exporting `layer` if there is none."""
        prefix = self.prefix(model_key, component, specs)
        with self._lock:
            if not self.has(model_key, component, specs):
                with (
                    native_stderr_filtered(),  # Paddle's tracing logs (quiet.py)
                    program_variant(getattr(self.runtime, "program_variant", None)),
                ):
                    export_layer(layer, specs, prefix)
                cache_folder.mark_used(prefix.parent)
                # keep the cache within its size limit, never dropping what was just written
                cache_folder.evict(self.root, cache_folder.cache_limit(), keep=[prefix.parent])
        return prefix

    def load(self, prefix: Path):
        """The program at `prefix`, loaded by the runtime back end (a callable on arrays)."""
        cache_folder.mark_used(Path(prefix).parent)
        with native_stderr_filtered():  # Paddle's loading and analysis logs (quiet.py)
            return self.runtime.load(prefix, threads=self.threads, precision=self.precision)

    def predictor(
        self, layer: paddle.nn.Layer, model_key: str, component: str, specs: list[InputSpec]
    ):
        """The loaded program for this key (exported first if the cache has none)."""
        return self.load(self.program(layer, model_key, component, specs))
