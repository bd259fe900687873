"""`Network`: what a component declares about one of its networks, and calls to run it.

A component builds one `Network` per Paddle Layer it runs (`Network("unet", layer, inputs)`),
lists them in its `networks()` method and calls them with NumPy arrays. Whether a call runs the
dynamic graph or an exported program, and with which runtime and precision, is decided by
`paddiff.execution.set_execution`, never by the component: that keeps the "auto" rule, the cache
and the fall-backs in one place for every component, built-in or third-party.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np
import paddle
from paddiff.execution.cache import ExportCache, fingerprint
from paddiff.execution.deferred import (
    ModelKeys,
    pending_of,
    read_pending,
    weights_signature,
)
from paddiff.execution.deferred import forget as forget_pending
from paddiff.execution.export import (
    InputSpec,
    load_exported_weights,
    names_file,
    program_files,
)
from paddiff.execution.heap import reusing_heap
from paddiff.execution.live_weights import LiveParameters


class Network:
    """One network of a component: `Network(name, layer, inputs, settings=None)`.

    name:     the program's name in the export cache ("unet", "vae_decoder", ...).
    layer:    the Paddle Layer; its `forward` is what runs and what is exported.
    inputs:   `InputSpec`s of `forward`'s arguments, in order; `None` dimensions stay dynamic.
    settings: config values the computation depends on beyond the weights (e.g. clip_skip):
              part of the cache key, so a changed setting never reuses an old program.

    Calling it with NumPy arrays returns NumPy arrays (one array, or a list for several outputs).

    In "dynamic" mode it runs the Layer directly (what training and debugging want). In "static"
    mode the first call exports the Layer through `cache` (or finds it there) and all calls run
    the exported program with the cache's runtime (Paddle Inference), which on CPU is several
    times faster than the dynamic graph (docs/performance.md). Dynamic `None` dimensions let one
    program serve every batch size and image size.

    Memory: once the program is loaded, the Layer's copy of the weights the program holds is
    released, so the process keeps one plain copy of the model (the predictor's); oneDNN adds its
    own reordered copy on the first run, which cannot be avoided from outside Paddle. Going back
    to the dynamic graph reads the weights back from the exported program.
    """

    def __init__(
        self,
        name: str,
        layer: paddle.nn.Layer,
        inputs: list[InputSpec],
        settings: dict | None = None,
    ):
        self.name = name
        self.layer = layer
        self.inputs = tuple(inputs)
        self.settings = settings
        self.mode = "dynamic"
        self._cache: ExportCache | None = None
        self._fallback = False
        self._model_key: str | None = None  # None in static mode: weights pending (a deferred load)
        self._signature: str | None = None  # where pending weights come from (deferred.py)
        self._predictor = None  # the runtime's loaded program
        self._released_to = None  # the program prefix holding the weights the Layer gave up
        self._program = None  # the prefix of the program exported from the keyed weights
        # weights changed in place since that program was saved (a LoRA): live_weights.py
        self._live: LiveParameters | None = None
        self._loading = threading.Lock()  # one export and one predictor, whatever the threads

    def use_static(self, cache: ExportCache, fallback: bool = False) -> None:
        """Run exported programs from `cache` (set_execution's business, not the component's);
        with `fallback`, a network that fails to export runs in the dynamic graph instead (with
        a warning) rather than raising."""
        if self._released_to is None and not self._use_cached_program(cache):
            self._forget_program()  # the key is of the weights as they are now
            # Hash now, while the weights are here (a later use_static after dynamic-graph
            # training sees the new weights; once released, the key of the program stays).
            # Weights still pending are hashed on the first call, if there is one (a network
            # never called, such as the VAE encoder for text-to-image, never reads them).
            self._signature = self._weights_signature()
            if self._signature is None:
                self._model_key = fingerprint(self.layer, self.settings)
            else:
                self._model_key = None
        if cache is not self._cache:
            self._predictor = None
        self.mode, self._cache, self._fallback = "static", cache, fallback

    def _use_cached_program(self, cache: ExportCache) -> bool:
        """Whether the Layer's weights are still pending (a deferred load) and `cache` holds the
        program exported from those same files: then its parameter file stands for them and the
        weight files are never read (the Layer reads the program's file if it is ever needed)."""
        signature = self._weights_signature()
        key = ModelKeys(cache.root).get(signature) if signature is not None else None
        if key is None or not cache.has(key, self.name, self.inputs):
            return False
        # the parameters stay pending too: should the program vanish before it is loaded,
        # they are read from the weight files and exported again
        self._forget_program()
        self._model_key = key
        self._released_to = self._program = cache.prefix(key, self.name, self.inputs)
        return True

    def _forget_program(self) -> None:
        self._program = None
        if self._live is not None:
            self._live.close()
            self._live = None

    def _weights_signature(self) -> str | None:
        """Where the Layer's weights come from (files, sizes, times) and its structure, if every
        parameter is still pending; None once any was read (then only the values tell)."""
        described = []
        for key, param in self.layer.named_parameters():
            pending = pending_of(param)
            if pending is None:
                return None
            source, source_key = pending
            described.append([key, *source.describe(source_key)])
        if not described:
            return None
        structure = fingerprint(self.layer, self.settings)  # no values: all are pending
        return weights_signature(structure, described)

    def _read_pending(self) -> None:
        for param in self.layer.parameters():
            read_pending(param)

    def parameter_count(self) -> int:
        """Parameters of the network (counted from shapes: right even once weights are released)."""
        return sum(int(np.prod(p.shape)) for p in self.layer.parameters())

    def export(self, cache: ExportCache) -> Path:
        """Make sure `cache` holds this network's program (exporting it if not); its prefix."""
        self._restore_weights()
        key = fingerprint(self.layer, self.settings)
        return cache.program(self.layer, key, self.name, self.inputs)

    def use_dynamic(self) -> None:
        self.mode, self._cache, self._predictor = "dynamic", None, None
        self._restore_weights()

    def restore_weights(self) -> None:
        """Give the Layer its weights back (read from the exported program) without leaving
        static mode. A component calls this before it uses the Layer other than through this
        Network (e.g. every hidden state of a text encoder); the process then holds them twice."""
        with self._loading:
            self._restore_weights()

    def set_inputs(self, inputs: list[InputSpec]) -> None:
        """Run the Layer with other inputs from now on (a variant of the same network, such as
        the UNet that also takes a control net's residuals). A static network frees the
        program of the old inputs and takes its weights back; the next call loads or exports
        the program of the new ones, so the process still holds one copy of the weights."""
        with self._loading:
            if tuple(inputs) == self.inputs:
                return
            self._predictor = None
            changed_in_place = self._live is not None and self._live.current() != self._live.base
            self._restore_weights()
            self._forget_program()
            if changed_in_place:  # a LoRA merged: the weights no longer match the old key
                self._model_key = fingerprint(self.layer, self.settings)
            self.inputs = tuple(inputs)

    def prepare_weight_change(self) -> None:
        """Before changing the Layer's weights in place: a static network frees its loaded
        program (it is reloaded by `weights_changed`). With a program, the Layer gets no weights:
        the caller sets the ones it changes (reading originals with `original_reader`), and
        `weights_changed` writes them into a parameter file next to the program's; without one,
        the Layer gets all its weights back."""
        with self._loading:
            self._predictor = None
            if self.mode != "static" or self._program is None:
                self._restore_weights()

    def original_reader(self, key: str):
        """A function that reads weight `key` as the static program holds it (the value before
        any in-place change), or None: then the caller keeps its own copy of the original."""
        with self._loading:
            if self.mode != "static" or self._program is None:
                return None
            live = self._live_parameters()
            return live.reader(key) if live.holds(key) else None

    def _live_parameters(self) -> LiveParameters:
        if self._live is None or self._live.base != Path(self._program):
            self._live = LiveParameters(self._program, self._cache.root)
        return self._live

    def weights_changed(self, keys: list[str] | None = None) -> None:
        """The Layer's weights were changed in place: a static network runs with the new weights
        from its next call on.

        keys: the state-dict keys whose values changed, same shapes (a LoRA merged or removed).
              The program is then reloaded without being exported again: the same program with
              a parameter file holding the Layer's values of these keys and the program's own
              values of the rest (live_weights.py, on disk while it differs from the program's;
              the Layer then gives up these weights too). None (shapes or structure changed,
              e.g. new token embeddings) exports a program of the new weights.
        """
        if self.mode != "static":
            return
        with self._loading:
            self._predictor = None
            if keys is None or self._program is None:
                # a new structure, or no program yet: key the cache by the weights as they are
                # now, so a program of changed weights never lands under the old key
                self._restore_weights()
                self._forget_program()
                self._model_key = fingerprint(self.layer, self.settings)
                return
            params = dict(self.layer.named_parameters())
            values = {key: params[key].numpy() for key in keys}
            prefix = self._live_parameters().update(values)
            del values
            self._release_weights(prefix)  # before loading, so two copies never coexist
            self._predictor = self._cache.load(prefix)

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

    def _key_pending_weights(self) -> None:
        """Read the pending weights and compute the key use_static left for the first call."""
        self._read_pending()
        self._model_key = fingerprint(self.layer, self.settings)
        if self._signature is not None:  # the next start finds the program without the weights
            ModelKeys(self._cache.root).put(self._signature, self._model_key)
            self._signature = None

    def _load_predictor(self):
        try:
            if self._model_key is None:
                self._key_pending_weights()
            prefix = self._cache.prefix(self._model_key, self.name, self.inputs)
            live = self._live.current() if self._live is not None else None
            if self._released_to not in (prefix, live):
                self._restore_weights()  # only if a program of another cache took them
            elif not self._cache.has(self._model_key, self.name, self.inputs):
                # removed since (`paddiff cache clear`, another process's size limit): export
                # it again from the weight files, which a deferred load still knows
                self._released_to = None
                self._read_pending()
            prefix = self._cache.program(self.layer, self._model_key, self.name, self.inputs)
        except Exception as exc:
            if not self._fallback:
                raise
            warnings.warn(
                f"paddiff: could not export {self.name} ({type(exc).__name__}: {exc}); "
                "running it in the dynamic graph",
                stacklevel=3,
            )
            self.use_dynamic()
            return None
        if self._fallback and not _memory_allows(prefix):
            self.use_dynamic()
            return None
        if self._program != prefix:
            self._forget_program()
            self._program = prefix
        if self._live is not None:  # weights changed in place since (a LoRA)
            prefix = self._live.current()
        self._release_weights(prefix)  # before loading, so two copies never coexist
        self._predictor = self._cache.load(prefix)
        return self._predictor

    def _release_weights(self, prefix) -> None:
        held = set(json.loads(names_file(prefix).read_text(encoding="utf-8")).values())
        for key, param in self.layer.named_parameters():
            if key in held:
                param._clear_data()
        self._released_to = prefix

    def _restore_weights(self) -> None:
        if self._released_to is not None:
            if not self._read_weights_in_place(self._released_to):
                weights = load_exported_weights(self._released_to)
                params = dict(self.layer.named_parameters())
                for key, value in weights.items():
                    params[key].set_value(value)
                del weights
            held = set(json.loads(names_file(self._released_to).read_text("utf-8")).values())
            self._released_to = None
            for key, param in self.layer.named_parameters():
                if key in held:  # read from the program, which was exported from them
                    forget_pending(param)
        self._read_pending()  # a deferred load that never reached a program

    def _read_weights_in_place(self, prefix) -> bool:
        """Read the program's parameter file straight into the Layer's (released) tensors: no
        second copy of the model in memory, unlike loading the program with paddle.jit.load.
        False if the file does not hold exactly the parameters the names file lists."""
        from paddle.base import core

        names = json.loads(names_file(prefix).read_text(encoding="utf-8"))  # variable -> key
        params = dict(self.layer.named_parameters())
        order = sorted(names)  # save_combine's order (param_file.py)
        tensors = []
        for name in order:
            param = params[names[name]]
            if not param._is_initialized():  # released: give it memory to be read into
                dtype = np.dtype(str(param.dtype).replace("paddle.", ""))
                param.get_tensor().set(np.empty(tuple(param.shape), dtype), paddle.CPUPlace())
            tensors.append(param.get_tensor())
        try:
            core.load_combine_func(
                str(program_files(prefix)[1]), order, tensors, False, paddle.CPUPlace()
            )
        except Exception:  # noqa: BLE001 (an unexpected layout: the slow path reads it)
            return False
        for name in order:
            param = params[names[name]]
            if not param._is_initialized() or tuple(param.shape) != tuple(
                param.get_tensor().shape()
            ):
                return False
        return True


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
