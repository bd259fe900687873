"""Weights checked but not read yet: how a model whose programs are cached starts without
reading its weights into dynamic-graph Layers.

While the loader builds components for exported programs (`deferring_weights()`), a strict
`load_state_dict_into` checks every key and shape against the file headers as always, but
leaves each parameter empty and marks it with where its value is (`PendingWeight`). A
`Network` then asks the cache's key store (`ModelKeys`) for the key its program was exported
under, by a signature of the weight files (path, size, modification time) and the network's
structure: when the program is there, the parameters are never read from the weight files (the
program's own parameter file is what runs, and what the Layer reads if it is ever needed: dynamic
mode, a LoRA, training, export). Otherwise the pending values are read as before, the key is
computed from the weights (`fingerprint`) and remembered for the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_ATTRIBUTE = "_paddiff_pending"
_state = threading.local()


@contextmanager
def deferring_weights(enabled: bool = True):
    """While active (in this thread), strict state-dict loading leaves parameters pending.
    Yields the list of Layers it deferred, for `settle`."""
    previous = getattr(_state, "active", False), getattr(_state, "layers", None)
    _state.active, _state.layers = enabled, []
    try:
        yield _state.layers
    finally:
        _state.active, _state.layers = previous


def deferring() -> bool:
    return getattr(_state, "active", False)


def note_deferred(layer) -> None:
    layers = getattr(_state, "layers", None)
    if layers is not None:
        layers.append(layer)


def settle(layers, networks) -> None:
    """Read the pending parameters of `layers` that no Network of `networks` runs (a component
    that uses part of its Layer outside a Network): only Networks know when to read them."""
    covered = {id(p) for network in networks for p in network.layer.parameters()}
    for layer in layers:
        for param in layer.parameters():
            if id(param) not in covered:
                read_pending(param)


class PendingSource:
    """One lazy state dict that parameters will be read from (shared by all of them)."""

    def __init__(self, state, transposed: set[str]):
        self.state = state
        self.transposed = transposed

    def read(self, key: str, param) -> None:
        value = np.asarray(self.state[key])
        if key in self.transposed:
            value = value.T
        dtype = np.dtype(str(param.dtype).replace("paddle.", ""))
        param.set_value(np.ascontiguousarray(value, dtype=dtype))

    def describe(self, key: str) -> list:
        """What fixes the value of `key` without reading it: its file (size and time), stored
        shape and dtype, the layout and the cast the state dict applies."""
        info = self.state.info(key)
        stat = os.stat(info.file)
        dtype = self.state.dtype.name if self.state.dtype is not None else None
        return [
            str(Path(info.file).resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            list(info.shape),
            info.dtype,
            self.state.layout,
            dtype,
            key in self.transposed,
        ]


def signable(state) -> bool:
    """Whether the values of `state` are fixed by files on disk (a lazy StateDict of files);
    in-memory arrays are read at once, as before."""
    info = getattr(state, "info", None)
    if info is None or not callable(info):
        return False
    try:
        return all(Path(state.info(key).file).is_file() for key in state)
    except (KeyError, OSError, TypeError):
        return False


def defer(param, source: PendingSource, key: str) -> None:
    setattr(param, _ATTRIBUTE, (source, key))


def pending_of(param):
    """(source, key) of a parameter whose value was not read yet, else None."""
    return getattr(param, _ATTRIBUTE, None)


def read_pending(param) -> None:
    """Read a pending parameter's value from its file (nothing if it has one already)."""
    pending = pending_of(param)
    if pending is not None:
        source, key = pending
        source.read(key, param)
        forget(param)


def forget(param) -> None:
    if hasattr(param, _ATTRIBUTE):
        delattr(param, _ATTRIBUTE)


def read_all_pending(layer) -> None:
    """Give every pending parameter of `layer` its value (for code that uses Layers directly)."""
    for param in layer.parameters():
        read_pending(param)


def _code_digest() -> str:
    """The code that turns weight files into parameter values (readers, key renaming,
    checkpoint conversion): a change there must not reuse a key remembered before."""
    import paddiff

    root = Path(paddiff.__file__).resolve().parent
    digest = hashlib.sha256()
    files = [root / "weights.py", *sorted((root / "convert").glob("*.py"))]
    for file in files:
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()


_code = None


def weights_signature(structure: str, described: list) -> str:
    """The signature a key is remembered under: the network's structure (its fingerprint with
    no weights) and where every weight's value comes from."""
    global _code
    if _code is None:
        _code = _code_digest()
    text = json.dumps([structure, _code, described], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class ModelKeys:
    """Keys of exported programs by weights signature, kept in the cache folder
    (`model-keys.json`), so the key of a cached program is known without reading the weights."""

    FILE = "model-keys.json"
    KEEP = 512  # entries; the oldest go first (a stale entry only costs reading the weights)

    def __init__(self, root: str | Path):
        self.path = Path(root) / self.FILE

    def get(self, signature: str) -> str | None:
        return self._read().get(signature)

    def put(self, signature: str, key: str) -> None:
        stored = self._read()
        stored.pop(signature, None)
        stored[signature] = key
        while len(stored) > self.KEEP:
            stored.pop(next(iter(stored)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, delete=False, suffix=".tmp"
            ) as stream:
                json.dump(stored, stream)
            os.replace(stream.name, self.path)
        except OSError:
            pass  # a read-only cache: the weights are read (and hashed) again next time

    def _read(self) -> dict:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return stored if isinstance(stored, dict) else {}
