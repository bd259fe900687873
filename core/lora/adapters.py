"""LoRA adapters merged into a pipeline's Paddle layers, with the originals kept for unloading.

Every layer an adapter touches gets its weight recomputed as

    W = W0 + sum over enabled adapters a of  weight_a * delta_a

from the original W0 (kept as a copy the first time the layer is touched), so changing the
adapters' weights, switching adapters or unloading never accumulates rounding: unloading writes
W0 back bit for bit. Merging costs nothing per denoising step (the network runs as it is), and
it is what an exported program needs too (its weights are the layer's; see `paddiff.execution`).

A load is checked in full before any weight changes: a file whose layers have other shapes than
the model's (another architecture or size, SDXL on SD 1.5) or whose layers match none of the
model's is refused with the file name and the first mismatching keys, and the pipeline stays
exactly as it was. Layers the model lacks while others match are skipped and reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from paddiff.lora.files import COMPONENTS, LoraFile, LoraModule, read_lora_file
from paddiff.lora.textual_inversion import token_width

SHOWN = 5  # mismatching keys named in an error message


class LoraMismatchError(ValueError):
    """A LoRA file does not fit the model (wrong shapes, or no layer it names exists)."""


class LoraPartlyAppliedWarning(UserWarning):
    """A LoRA named layers the model does not have; the layers that exist were applied."""


@dataclass
class LoadReport:
    """What `load_lora_weights` did: the adapter's name, its file, how many layers it changes
    and the layers of the file that the model does not have."""

    adapter_name: str
    path: Path
    format: str
    applied: int
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Target:
    """One Paddle layer (Linear or Conv2D) a LoRA can change."""

    component: str
    name: str  # the layer's path in its network
    network: object  # the paddiff.execution.Network that runs it
    param: object  # its weight parameter
    linear: bool  # Paddle stores Linear weights [in, out]: deltas are transposed

    def torch_shape(self) -> tuple[int, ...]:
        shape = tuple(self.param.shape)
        return shape[::-1] if self.linear else shape


@dataclass
class _Adapter:
    file: LoraFile
    modules: dict[tuple[str, str], list[LoraModule]]  # target key -> its modules
    scale: float
    tokens: list[str] = field(default_factory=list)  # its bundled embeddings, added while loaded


class LoraAdapters:
    """The LoRA adapters of one pipeline (`Pipeline.lora`): loaded, enabled with weights, fused."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.adapters: dict[str, _Adapter] = {}
        self.active: dict[str, float] = {}  # adapter name -> weight (enabled adapters)
        self.fused: dict[str, float] = {}  # fused adapters: kept through unload()
        self._unloaded_fused: set[str] = set()  # fused, then unloaded: unfuse() removes them
        self._originals: dict[tuple[str, str], np.ndarray] = {}  # W0, Paddle layout
        self._targets: dict[str, dict[str, _Target]] | None = None

    # -- the API Pipeline forwards -------------------------------------------------------------

    def load(self, path, adapter_name: str | None = None, scale: float = 1.0) -> LoadReport:
        """Read `path`, check it against the model, and enable it with weight `scale`."""
        name = adapter_name or self._default_name()
        if name in self.adapters or name in self.fused:
            raise ValueError(f"an adapter named {name!r} is already loaded; pick another name")
        lora = read_lora_file(path)
        modules, skipped = self._match(lora)
        self._check_tokens(lora)
        self.adapters[name] = _Adapter(lora, modules, float(scale), list(lora.embeddings))
        for token, rows in lora.embeddings.items():
            self.pipeline.text_encoder.add_tokens(token, rows)
        if lora.embeddings:
            self.pipeline.prompt_cache.clear()
        self.active[name] = float(scale)
        self._apply(set(modules))
        report = LoadReport(name, lora.path, lora.format, len(modules), skipped)
        if skipped:
            warnings.warn(
                f"{lora.path.name}: applied {len(modules)} layers, skipped {len(skipped)} that "
                f"this model does not have: {', '.join(skipped[:SHOWN])}"
                + (" ..." if len(skipped) > SHOWN else ""),
                LoraPartlyAppliedWarning,
                stacklevel=3,
            )
        return report

    def set_adapters(self, names, weights=None) -> None:
        """Enable exactly `names` (a name or a list), with `weights` (one number for all, or one
        per name; default 1.0). Adapters not named stay loaded but have no effect."""
        names = [names] if isinstance(names, str) else list(names)
        if weights is None:
            weights = [1.0] * len(names)
        elif isinstance(weights, (int, float)):
            weights = [float(weights)] * len(names)
        weights = [float(w) for w in weights]
        if len(weights) != len(names):
            raise ValueError(f"{len(names)} adapter names but {len(weights)} weights")
        unknown = [n for n in names if n not in self.adapters]
        if unknown:
            raise ValueError(
                f"no adapter named {', '.join(map(repr, unknown))}; loaded: "
                f"{', '.join(self.adapters) or 'none'}"
            )
        touched = self._keys(self.active)
        self.active = dict(zip(names, weights, strict=True))
        self._apply(touched | self._keys(self.active))

    def disable(self) -> None:
        """No adapter has an effect (they stay loaded; `set_adapters` enables them again)."""
        self.set_adapters([])

    def unload(self) -> None:
        """Remove every adapter that is not fused; fused ones stay in the weights."""
        touched = self._keys(self.active)
        self._remove_tokens([n for n in self.adapters if n not in self.fused])
        self.adapters = {n: a for n, a in self.adapters.items() if n in self.fused}
        self.active = {n: w for n, w in self.active.items() if n in self.fused}
        self._unloaded_fused |= set(self.fused)
        self._apply(touched)

    def fuse(self, adapter_names=None, lora_scale: float = 1.0) -> None:
        """Make the enabled adapters (or `adapter_names`) part of the model: they keep their
        effect (times `lora_scale`) after `unload()`, until `unfuse()`."""
        names = list(self.active) if adapter_names is None else list(adapter_names)
        for name in names:
            if name not in self.adapters:
                raise ValueError(f"no adapter named {name!r}")
            self.fused[name] = self.active.get(name, 1.0) * lora_scale
            self.active[name] = self.fused[name]
        self._apply(self._keys(self.active))

    def unfuse(self) -> None:
        """Undo `fuse`: fused adapters that were unloaded since are removed from the weights;
        ones still loaded stay enabled as ordinary adapters."""
        touched = self._keys(self.active)
        self._remove_tokens([n for n in self._unloaded_fused if n in self.adapters])
        for name in self._unloaded_fused:
            self.active.pop(name, None)
            self.adapters.pop(name, None)
        self.fused, self._unloaded_fused = {}, set()
        self._apply(touched)

    def use(self, loras) -> None:
        """Exactly these (path, weight) pairs enabled: files not loaded yet are loaded (named by
        their stem), every other adapter is disabled. What a server does per request."""
        names, weights = [], []
        for path, weight in loras:
            path = Path(path)
            name = next((n for n, a in self.adapters.items() if a.file.path == path), None)
            if name is None:
                name = path.stem if path.stem not in self.adapters else self._default_name()
                self.load(path, name, weight)
            names.append(name)
            weights.append(float(weight))
        self.set_adapters(names, weights)

    def summary(self) -> list[tuple[str, float, LoraFile]]:
        """(name, weight, file) of each enabled adapter, for PNG metadata."""
        return [(n, w, self.adapters[n].file) for n, w in self.active.items() if w != 0]

    # -- matching a file against the model ---------------------------------------------------

    def _default_name(self) -> str:
        n = 0
        while f"default_{n}" in self.adapters:
            n += 1
        return f"default_{n}"

    def _targets_of(self) -> dict[str, dict[str, _Target]]:
        """component -> flattened layer name -> target, for every Linear / Conv2D layer."""
        if self._targets is None:
            import paddle
            from paddiff.execution import networks_of

            self._targets = {}
            # a pipeline whose parts sit elsewhere (SDXL: two encoders in one) says where
            parts = getattr(self.pipeline, "adapter_components", None)
            parts = (
                parts()
                if parts
                else {c: getattr(self.pipeline, a, None) for c, a in COMPONENTS.items()}
            )
            for component, part in parts.items():
                found: dict[str, _Target] = {}
                for network in networks_of(part):
                    for name, sub in network.layer.named_sublayers():
                        if isinstance(sub, (paddle.nn.Linear, paddle.nn.Conv2D)):
                            linear = isinstance(sub, paddle.nn.Linear)
                            target = _Target(component, name, network, sub.weight, linear)
                            for alias in _aliases(name):
                                found.setdefault(alias, target)
                if found:
                    self._targets[component] = found
        return self._targets

    def _match(self, lora: LoraFile):
        """(target key -> modules, skipped module names); raises LoraMismatchError."""
        targets = self._targets_of()
        matched: dict[tuple[str, str], list[LoraModule]] = {}
        skipped, wrong = [], []
        for module in lora.modules:
            target = targets.get(module.component, {}).get(_flat(module.module))
            if target is None:
                skipped.append(f"{module.component}:{module.module}")
                continue
            shape = (module.up.shape[0], *module.down.shape[1:])
            if module.up.reshape(module.up.shape[0], -1).shape[1] != module.down.shape[0] or (
                _squeeze(shape) != _squeeze(target.torch_shape())
            ):
                key = module.keys[0] if module.keys else module.module
                wrong.append(f"{key}: LoRA {shape}, model {target.torch_shape()}")
                continue
            matched.setdefault((target.component, target.name), []).append(module)
        if wrong:
            raise LoraMismatchError(
                f"{lora.path}: {len(wrong)} of its {len(lora.modules)} layers do not fit this "
                f"model (another architecture or size?); nothing was applied. First: "
                + "; ".join(wrong[:SHOWN])
            )
        if not matched:
            raise LoraMismatchError(
                f"{lora.path}: none of its {len(lora.modules)} layers exists in this model "
                f"(another architecture?); nothing was applied. First: "
                + ", ".join(skipped[:SHOWN])
            )
        return matched, skipped

    def _check_tokens(self, lora: LoraFile) -> None:
        """Refuse (before anything changes) bundled embeddings the text encoder cannot take."""
        if not lora.embeddings:
            return
        encoder = self.pipeline.text_encoder
        if not hasattr(encoder, "add_tokens"):
            raise LoraMismatchError(
                f"{lora.path}: bundles embeddings ({', '.join(lora.embeddings)}), but the text "
                f"encoder {type(encoder).__name__} cannot take new tokens; nothing was applied"
            )
        width = token_width(encoder)
        for token, rows in lora.embeddings.items():
            problem = None
            if encoder.tokenizer.has_token(token) or token in encoder.tokenizer.added:
                problem = "is already a token (another LoRA or embedding loaded?)"
            elif rows.shape[1] != width:
                problem = f"has width {rows.shape[1]}, this text encoder {width}"
            if problem:
                raise LoraMismatchError(
                    f"{lora.path}: its bundled embedding {token!r} {problem}; nothing was applied"
                )

    def _remove_tokens(self, names) -> None:
        tokens = [t for n in names for t in self.adapters[n].tokens]
        if tokens:
            self.pipeline.text_encoder.remove_tokens(tokens)
            self.pipeline.prompt_cache.clear()

    # -- writing weights -----------------------------------------------------------------------

    def _keys(self, names) -> set[tuple[str, str]]:
        return {key for n in names if n in self.adapters for key in self.adapters[n].modules}

    def _apply(self, keys: set[tuple[str, str]]) -> None:
        """Recompute the weight of every layer in `keys` from its original and the enabled
        adapters; layers no adapter changes any more get their original back."""
        targets = self._targets_of()
        changed_networks = {}
        prepared: set[int] = set()
        text_changed = False
        for component, name in sorted(keys):
            target = targets[component][_flat(name)]
            network = target.network
            if id(network) not in prepared:
                prepared.add(id(network))
                prepare = getattr(network, "prepare_weight_change", None)
                if prepare is not None:  # an exported program may hold the weights
                    prepare()
            key = (component, name)
            if key not in self._originals:
                self._originals[key] = _original_of(network, f"{name}.weight", target.param)
            original = self._originals[key]
            if callable(original):  # read back from the network's exported program
                original = original()
            deltas = [
                (weight, module)
                for adapter_name, weight in self.active.items()
                if weight != 0
                for module in self.adapters[adapter_name].modules.get(key, ())
            ]
            if not deltas:
                value = original
                del self._originals[key]
            else:
                total = np.zeros(target.torch_shape(), np.float32)
                for weight, module in deltas:
                    total += np.float32(weight) * module.delta().reshape(total.shape)
                if target.linear:
                    total = total.T
                value = original + total.astype(original.dtype)
            target.param.set_value(np.ascontiguousarray(value))
            changed_networks.setdefault(id(network), (network, []))[1].append(f"{name}.weight")
            text_changed |= component != "unet"
        for network, changed_keys in changed_networks.values():
            changed = getattr(network, "weights_changed", None)
            if changed is not None:  # an exported program gets the new weights too
                changed(changed_keys)
        if text_changed:
            self.pipeline.prompt_cache.clear()  # cached embeddings came from the old weights


def _original_of(network, key: str, param):
    """How to get a layer's original weight back: a static network reads it from its exported
    program when asked (so no copy of the changed layers is kept in memory); otherwise a copy."""
    reader = getattr(network, "original_reader", None)
    found = reader(key) if reader is not None else None
    return found if found is not None else param.numpy().copy()


def _flat(name: str) -> str:
    return name.replace(".", "_")


def _aliases(name: str) -> list[str]:
    """Flattened names a file may use for a layer: transformers 5 saves CLIP text models
    without the `text_model.` prefix that 4.x (and every kohya file) has."""
    flat = _flat(name)
    return [flat, flat.removeprefix("text_model_")] if flat.startswith("text_model_") else [flat]


def _squeeze(shape) -> tuple[int, ...]:
    """A 1x1 convolution and a Linear layer take the same update."""
    shape = tuple(shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape
