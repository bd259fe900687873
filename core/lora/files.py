"""LoRA files -> `LoraModule`s: the neutral form every format reader (a `paddiff.lora_formats`
plugin) produces and `paddiff.lora.adapters` applies.

A LoRA changes a layer's weight W (torch layout: [out, in] or [out, in, kh, kw]) by

    delta W = scale * (alpha / rank) * up @ down

with `down` of shape [rank, in(, kh, kw)] and `up` of shape [out, rank(, 1, 1)] (Hu et al. 2021;
LyCORIS' LoCon uses the same product for convolutions, `down` holding the kernel). Files are read
with `paddiff.weights.load_state_dict`, so pickles (.pt, .ckpt, .bin, .pdparams) go through the
restricted unpickler and never run code.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Components a LoRA may name, and the pipeline attribute each one is.
COMPONENTS = {
    "unet": "denoiser",
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
}


class LoraFormatError(ValueError):
    """No registered LoRA format reads this file, or its reader found it damaged."""


@dataclass
class LoraModule:
    """One layer's low-rank update, as a format reader found it.

    component: "unet", "text_encoder" or "text_encoder_2".
    module:    the layer's path in diffusers / transformers naming, dotted
               ("down_blocks.0.attentions.0.proj_in") or kohya-style with "_" for "."
               ("down_blocks_0_attentions_0_proj_in"); both are matched the same way.
    down, up:  the factors in torch layout (see the module docstring).
    alpha:     the file's alpha; None means alpha = rank (a scale of 1).
    keys:      the file's keys this came from (named in error messages).
    """

    component: str
    module: str
    down: np.ndarray
    up: np.ndarray
    alpha: float | None = None
    keys: tuple[str, ...] = field(default=())

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> np.ndarray:
        """alpha / rank * up @ down, shaped [out, in(, kh, kw)] (torch layout), float32."""
        down = self.down.astype(np.float64)
        up = self.up.astype(np.float64).reshape(self.up.shape[0], -1)
        if up.shape[1] != down.shape[0]:
            raise ValueError(
                f"{self.keys[0] if self.keys else self.module}: up has rank {up.shape[1]} but "
                f"down has rank {down.shape[0]}"
            )
        product = up @ down.reshape(down.shape[0], -1)
        scale = 1.0 if self.alpha is None else float(self.alpha) / self.rank
        return (scale * product).reshape((up.shape[0], *down.shape[1:])).astype(np.float32)


@dataclass
class LoraFile:
    """What `read_lora_file` returns: the modules, the reader that read them, and the file's
    identity for PNG metadata."""

    path: Path
    format: str
    modules: list[LoraModule]
    # A1111's bundled embeddings: new prompt tokens the LoRA was trained with (pivotal
    # tuning), token -> rows [n, hidden]; loading the LoRA adds them to the text encoder
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    def short_hash(self) -> str:
        """The first 12 hex digits of the file's SHA-256 (what WebUI writes in "Lora hashes")."""
        return file_hash(self.path)


def file_hash(path: Path) -> str:
    """The first 12 hex digits of a file's SHA-256 (computed once per file version)."""
    return file_sha256(path)[:12]


def file_sha256(path: Path) -> str:
    """A file's SHA-256, computed once per file version (path, modification time, size)."""
    path = Path(path)
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: str, _mtime: int, _size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _TorchLayout(dict):
    """Tensors of a file as torch-layout arrays, read when looked up. Paddle-saved LoRAs
    (ppdiffusers .pdparams) store 2-D (Linear) weights as [in, out]; those are transposed."""

    def __init__(self, state):
        super().__init__()
        self._state = state
        self._paddle = getattr(state, "layout", "torch") == "paddle"
        for key in state:
            dict.__setitem__(self, key, None)

    def __getitem__(self, key):
        value = np.asarray(self._state[key])
        if self._paddle and value.ndim == 2:
            value = value.T
        return np.require(value, None, "C")  # ascontiguousarray would make 0-d arrays 1-d

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        return ((key, self[key]) for key in self)

    def values(self):
        return (self[key] for key in self)


# A1111's keys for an embedding bundled in a LoRA file (SD 1.x style: one text encoder);
# `paddiff train lora --new-token` writes them
BUNDLE_PREFIX, BUNDLE_SUFFIX = "bundle_emb.", ".string_to_param.*"


def bundled_embeddings(path: Path, state) -> dict[str, np.ndarray]:
    """token -> rows of the embeddings bundled in a LoRA file, as A1111 writes them for one
    text encoder (`bundle_emb.<token>.string_to_param.*`). Bundles for two text encoders
    (SDXL's `.clip_l` / `.clip_g`) are not read: a warning names them."""
    import warnings

    found, other = {}, []
    for key in state:
        if not key.startswith(BUNDLE_PREFIX):
            continue
        if not key.endswith(BUNDLE_SUFFIX):
            other.append(key)
            continue
        rows = np.asarray(state[key], np.float32)
        token = key[len(BUNDLE_PREFIX) : -len(BUNDLE_SUFFIX)]
        found[token] = rows[None] if rows.ndim == 1 else rows
    if other:
        warnings.warn(
            f"{path.name}: bundled embeddings not loaded (only SD 1.x-style "
            f"'{BUNDLE_PREFIX}<token>{BUNDLE_SUFFIX}' are read): {', '.join(other[:SHOWN_KEYS])}",
            stacklevel=3,
        )
    return found


SHOWN_KEYS = 5


def read_lora_file(path: str | Path, registry=None) -> LoraFile:
    """Read a LoRA file with the first registered `paddiff.lora_formats` reader that matches."""
    from paddiff.registry import default_registry
    from paddiff.weights import load_state_dict, read_safetensors_header

    path = Path(path)
    registry = registry or default_registry()
    state = load_state_dict(path)
    metadata = read_safetensors_header(path)[1] if path.suffix == ".safetensors" else {}
    keys = list(state)
    if not keys:
        raise LoraFormatError(f"{path}: holds no tensors")
    for name in registry.names("lora_formats"):
        reader = registry.get("lora_formats", name)
        if reader.matches(keys):
            try:
                modules = reader.read(_TorchLayout(state), dict(metadata))
            except (ValueError, KeyError) as exc:
                raise LoraFormatError(f"{path}: not a readable {name} LoRA: {exc}") from exc
            if not modules:
                raise LoraFormatError(f"{path}: the {name} reader found no LoRA layers in it")
            return LoraFile(path, name, modules, bundled_embeddings(path, state))
    shown = ", ".join(keys[:5])
    raise LoraFormatError(
        f"{path}: no LoRA format reader recognises its keys (first keys: {shown}); readers "
        f"installed: {', '.join(registry.names('lora_formats')) or 'none'}"
    )
