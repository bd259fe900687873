"""Reading and writing weight files as NumPy state dicts, without torch or Paddle.

- `load_state_dict(path)`: one file: `.safetensors`, PyTorch `.bin`/`.ckpt`/`.pt` (through the
  restricted unpickler in `paddiff.safe_pickle`), Paddle `.pdparams`.
- `load_component_weights(folder)`: the weights of one component folder (`unet/`, `vae/`,
  `text_encoder/`), whatever diffusers, transformers, ppdiffusers or paddlenlp named them, sharded
  or not, with fp16 variants.
- `save_state_dict(state, path)`: paddiff's one `.safetensors` writer. Every component's
  `save_pretrained` writes its weights with it (through `plugins/nn/component_io.save_component`),
  and so do the loader (converted single files for plugins that only read folders), the test
  helpers and the benchmarks.

Both loaders return a `StateDict`: a read-only mapping whose values are read from disk when they
are looked up, one tensor at a time, so that a loader copying tensors into a model one by one
never holds a second full copy of the weights.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from paddiff.safe_pickle import (
    BFLOAT16,
    CheckpointFormatError,
    TensorRef,
    UnsafeCheckpointError,
    bfloat16_to_float32,
    load_pickled_tensors,
)

__all__ = [
    "StateDict",
    "TensorInfo",
    "WeightsFormatError",
    "UnsafeCheckpointError",
    "load_state_dict",
    "load_component_weights",
    "save_state_dict",
    "find_component_weights",
]

#: A weights file that is damaged or not in a format we read (subclass of ValueError).
WeightsFormatError = CheckpointFormatError

TORCH, PADDLE = "torch", "paddle"  # Linear weights are [out, in] in torch, [in, out] in Paddle
# The one list of weight-file suffixes: what `load_state_dict` reads, so also what the loader takes
# as a single-file checkpoint (paddiff.loader) and what a folder's model hash covers
# (paddiff.model_hash). Pickles are PyTorch's (.bin .ckpt .pt .pth) and Paddle's (.pdparams).
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pdparams")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


@dataclass(frozen=True)
class TensorInfo:
    """Shape and stored dtype of one tensor, and the file it is in."""

    shape: tuple[int, ...]
    dtype: str  # as stored: "float32", "float16", "bfloat16", "int64", ...
    file: Path


class StateDict(Mapping):
    """Tensors by key, read from their files on each lookup.

    `layout` is TORCH (Linear weights [out, in], as diffusers and transformers store them) or
    PADDLE ([in, out], as ppdiffusers and paddlenlp store them). `info(key)` gives a tensor's
    shape, dtype and file without reading it. Floating tensors are cast to `dtype` when read,
    if one is set; bfloat16 is always widened to float32 (NumPy has no bfloat16).
    """

    def __init__(self, layout: str = TORCH, dtype: str | None = None):
        if layout not in (TORCH, PADDLE):
            raise ValueError(f"layout must be {TORCH!r} or {PADDLE!r}, got {layout!r}")
        self.layout = layout
        self.dtype = np.dtype(dtype) if dtype else None
        self._entries: dict[str, tuple[TensorInfo, Callable[[], np.ndarray]]] = {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], layout: str = TORCH) -> StateDict:
        state = cls(layout)
        for key, array in arrays.items():
            array = np.asarray(array)
            info = TensorInfo(array.shape, array.dtype.name, Path("<memory>"))
            state.add(key, info, lambda a=array: a)
        return state

    def add(self, key: str, info: TensorInfo, read: Callable[[], np.ndarray]) -> None:
        """Add a tensor that `read()` loads; a key may be added once."""
        if key in self._entries:
            raise WeightsFormatError(
                f"tensor {key!r} appears twice: in {self._entries[key][0].file} and {info.file}"
            )
        self._entries[key] = (info, read)

    def renamed(self, rename: Callable[[str], str | None]) -> StateDict:
        """The same tensors (still unread) under `rename(key)`; keys renamed to None are dropped."""
        out = StateDict(self.layout, self.dtype.name if self.dtype is not None else None)
        for key, (info, read) in self._entries.items():
            new = rename(key)
            if new is not None:
                out.add(new, info, read)
        return out

    def info(self, key: str) -> TensorInfo:
        return self._lookup(key)[0]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._lookup(key)[0].shape

    def reader(self, key: str) -> Callable[[], np.ndarray]:
        """The function that reads `key` (for building derived state dicts lazily)."""
        return lambda: self[key]

    @property
    def files(self) -> list[Path]:
        return sorted({info.file for info, _ in self._entries.values()})

    def read_dtype(self, key: str) -> np.dtype:
        """The dtype `self[key]` will have."""
        stored = self.info(key).dtype
        if stored == BFLOAT16:
            stored = "float32"
        stored = np.dtype(stored)
        return self.dtype if self.dtype is not None and stored.kind == "f" else stored

    def __getitem__(self, key: str) -> np.ndarray:
        info, read = self._lookup(key)
        array = read()
        if array.shape != info.shape:
            raise WeightsFormatError(
                f"{info.file}: tensor {key!r} has shape {array.shape}, expected {info.shape}"
            )
        if self.dtype is not None and array.dtype.kind == "f" and array.dtype != self.dtype:
            array = array.astype(self.dtype)
        return array

    def _lookup(self, key: str):
        try:
            return self._entries[key]
        except KeyError:
            files = ", ".join(str(f) for f in self.files) or "an empty state dict"
            raise KeyError(f"no tensor {key!r} in {files}") from None

    def __contains__(self, key) -> bool:  # Mapping's default would read the tensor
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"StateDict({len(self)} tensors, layout={self.layout!r}, files={self.files})"


# -- one file -------------------------------------------------------------------------------------


def load_state_dict(path: str | Path, dtype: str | None = None) -> StateDict:
    """The tensors of one weights file, by key (see `StateDict`).

    Raises FileNotFoundError for a missing file, WeightsFormatError (a ValueError) naming the
    file for a damaged one, and UnsafeCheckpointError for a pickle that would run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, dtype)
    if path.suffix in PICKLE_SUFFIXES:
        return _load_pickle(path, dtype)
    raise WeightsFormatError(
        f"{path}: unknown weights format {path.suffix!r}; expected one of "
        + ", ".join(WEIGHT_SUFFIXES)
    )


def _load_pickle(path: Path, dtype: str | None) -> StateDict:
    layout = PADDLE if path.suffix == ".pdparams" else TORCH
    state = StateDict(layout, dtype)
    for key, value in load_pickled_tensors(path).items():
        if isinstance(value, TensorRef):
            state.add(key, TensorInfo(value.shape, value.dtype, path), value.read)
        else:  # Paddle pickles hold the arrays themselves
            state.add(key, TensorInfo(value.shape, value.dtype.name, path), lambda v=value: v)
    return state


# safetensors: 8-byte little-endian header length, a JSON header {key: {dtype, shape,
# data_offsets: [begin, end]}, "__metadata__": {...}}, then the data (offsets relative to it).
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": BFLOAT16,
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
_MAX_HEADER = 100 * 2**20


def read_safetensors_header(path: Path) -> tuple[dict, dict, int]:
    """(tensor entries, metadata, byte offset of the data), validated against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsFormatError(
                f"{path}: only {size} bytes, too short for a safetensors header (truncated?)"
            )
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8 or length > _MAX_HEADER:
            raise WeightsFormatError(
                f"{path}: safetensors header length {length} does not fit in a file of "
                f"{size} bytes (truncated or not a safetensors file)"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsFormatError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    except KeyError as exc:
        raise WeightsFormatError(f"{path}: safetensors header lists {exc} twice") from None
    if not isinstance(header, dict):
        raise WeightsFormatError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + length
    for key, entry in header.items():
        _check_entry(path, key, entry, size - data_start)
    return header, metadata, data_start


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise KeyError(key)
        seen[key] = value
    return seen


def _check_entry(path: Path, key: str, entry, data_size: int) -> None:
    where = f"{path}: tensor {key!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise WeightsFormatError(f"{where}: header entry lacks dtype, shape or data_offsets")
    if entry["dtype"] not in _SAFETENSORS_DTYPES:
        raise WeightsFormatError(f"{where}: unsupported dtype {entry['dtype']!r}")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise WeightsFormatError(f"{where}: bad shape {shape!r}")
    if not (
        isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
    ):
        raise WeightsFormatError(f"{where}: bad data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise WeightsFormatError(
            f"{where}: data at bytes {begin}..{end} lies outside the file's {data_size} data "
            "bytes (truncated?)"
        )
    itemsize = (
        2 if entry["dtype"] == "BF16" else np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]]).itemsize
    )
    if end - begin != int(np.prod(shape, dtype=np.int64)) * itemsize:
        raise WeightsFormatError(f"{where}: {end - begin} bytes of data for shape {shape}")


def _load_safetensors(path: Path, dtype: str | None) -> StateDict:
    header, metadata, data_start = read_safetensors_header(path)
    # paddlenlp marks its (Paddle-layout) files "np" or "pd"; diffusers and transformers "pt".
    paddle = metadata.get("format") in ("np", "pd") or path.name.startswith("diffusion_paddle")
    state = StateDict(PADDLE if paddle else TORCH, dtype)
    for key, entry in header.items():
        stored = _SAFETENSORS_DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        start = data_start + entry["data_offsets"][0]
        read = _safetensors_reader(path, stored, shape, start)
        state.add(key, TensorInfo(shape, stored, path), read)
    return state


def _safetensors_reader(path: Path, stored: str, shape: tuple[int, ...], start: int):
    def read() -> np.ndarray:
        if stored == BFLOAT16:
            return bfloat16_to_float32(map_array(path, "<u2", shape, start))
        return map_array(path, np.dtype(stored).newbyteorder("<"), shape, start)

    return read


def map_array(path: Path, dtype, shape: tuple[int, ...], offset: int) -> np.ndarray:
    """A tensor stored at `offset` of a file, memory-mapped copy-on-write.

    Nothing is read until the values are used, `.shape` is free, and the pages are released when
    the array is dropped, so reading tensor after tensor never holds more than one in memory.
    """
    dtype = np.dtype(dtype)
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.zeros(shape, dtype=dtype.newbyteorder("="))
    mapped = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)
    array = np.asarray(mapped)  # a plain ndarray view; it keeps the mapping alive
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


# -- writing --------------------------------------------------------------------------------------

_DTYPE_CODES = {name: code for code, name in _SAFETENSORS_DTYPES.items() if name != BFLOAT16}


def save_state_dict(
    state: Mapping[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write `state` as a .safetensors file, one tensor at a time.

    The file appears only when complete (written next to it, then renamed). `metadata` defaults
    to {"format": "pt"}, which diffusers and transformers expect of torch-layout files.
    """
    path = Path(path)
    metadata = dict(metadata or {"format": "pt"})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        # The format allows only strings here; other readers refuse a file with anything else.
        raise ValueError(f"safetensors metadata must map str to str, got {metadata!r}")
    specs = {key: _spec(state, key) for key in state}
    header: dict = {"__metadata__": metadata}
    offset = 0
    for key, (shape, dtype) in specs.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[key] = {"dtype": _DTYPE_CODES[dtype.name], "shape": list(shape),
                       "data_offsets": [offset, offset + nbytes]}  # fmt: skip
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keeps the data 8-byte aligned, as the format recommends
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key, (shape, dtype) in specs.items():
            # np.ascontiguousarray makes 0-d arrays 1-d (kohya's scalar `.alpha` tensors)
            array = np.require(np.asarray(state[key], dtype=dtype.newbyteorder("<")), None, "C")
            if array.shape != shape:
                raise ValueError(f"tensor {key!r} changed shape while saving")
            if array.size:  # memoryview cannot cast an empty array; it has no bytes anyway
                f.write(memoryview(array).cast("B"))
    os.replace(partial, path)


def _spec(state: Mapping, key: str) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(state, StateDict):
        return state.shape(key), state.read_dtype(key)
    array = np.asarray(state[key])
    if array.dtype.name not in _DTYPE_CODES:
        raise ValueError(f"cannot save tensor {key!r} of dtype {array.dtype}")
    return array.shape, array.dtype


# -- component folders ----------------------------------------------------------------------------

# File families in order of preference (safetensors before pickles, as diffusers does). Each is
# a stem and a suffix; a variant goes between them (`.fp16`), and a sharded family has an index
# `<stem><suffix>.index[.<variant>].json` mapping each key to its shard.
WEIGHT_FILE_FAMILIES = [
    ("diffusion_pytorch_model", ".safetensors"),  # diffusers
    ("model", ".safetensors"),  # transformers (torch layout) or paddlenlp (Paddle layout)
    ("diffusion_pytorch_model", ".bin"),
    ("pytorch_model", ".bin"),
    ("diffusion_paddle_model", ".safetensors"),  # ppdiffusers
    ("model_state", ".pdparams"),  # ppdiffusers and paddlenlp
]


def find_component_weights(folder: str | Path, variant: str | None = None) -> list[Path]:
    """The weight files of a component folder, in the first family present: [file] or shards."""
    return _locate(folder, variant)[0]


def _locate(folder: str | Path, variant: str | None) -> tuple[list[Path], dict | None]:
    """(files, the shard index's weight map or None)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"component folder not found: {folder}")
    tag = f".{variant}" if variant else ""
    for stem, suffix in WEIGHT_FILE_FAMILIES:
        single = folder / f"{stem}{tag}{suffix}"
        if single.is_file():
            return [single], None
        index = folder / f"{stem}{suffix}.index{tag}.json"
        if index.is_file():
            return _shards(index)
    present = sorted(p.name for p in folder.iterdir())
    wanted = ", ".join(f"{stem}{tag}{suffix}" for stem, suffix in WEIGHT_FILE_FAMILIES)
    message = f"no weights in {folder}: looked for {wanted} (or a sharded index of them)"
    message += f"; the folder holds: {', '.join(present) or 'nothing'}"
    others = sorted({n.split(".")[-2] for n in present if n.count(".") >= 2} - {"index"})
    if not variant and others:
        message += f". Pass variant= (e.g. {others[0]!r}) to load a variant"
    raise FileNotFoundError(message)


def _shards(index: Path) -> tuple[list[Path], dict]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = [index.parent / name for name in dict.fromkeys(weight_map.values())]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsFormatError(f"{index}: not a shard index ({exc})") from None
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"{index} names shards that do not exist: {', '.join(missing)}")
    return shards, {key: index.parent / name for key, name in weight_map.items()}


def _check_shards(state: StateDict, weight_map: dict[str, Path]) -> None:
    """Every key is in the shard the index names, and the index names every key."""
    misplaced = [k for k, f in weight_map.items() if k not in state or state.info(k).file != f]
    unlisted = [k for k in state if k not in weight_map]
    if misplaced or unlisted:
        some = ", ".join((misplaced + unlisted)[:8])
        raise WeightsFormatError(
            f"shard index of {state.files[0].parent} does not match its shards "
            f"({len(misplaced)} keys missing from their shard, {len(unlisted)} not in the index: "
            f"{some})"
        )


def load_component_weights(
    folder: str | Path, variant: str | None = None, dtype: str | None = "float32"
) -> StateDict:
    """All weights of one component folder as a `StateDict`. The contract for model loaders:

    - Files found (first match wins, safetensors preferred): diffusion_pytorch_model[.V].safetensors,
      model[.V].safetensors, diffusion_pytorch_model[.V].bin, pytorch_model[.V].bin,
      diffusion_paddle_model[.V].safetensors, model_state[.V].pdparams, or any of those sharded
      with a `<name>.index[.V].json`; V is `variant` (e.g. "fp16").
    - Keys are exactly as stored (diffusers / transformers names).
    - `state.layout` says how 2-D Linear weights are stored: "torch" ([out, in]; transpose them
      for paddle.nn.Linear) or "paddle" ([in, out] already; do not transpose).
    - Floating tensors come out as `dtype` (float32 by default; None keeps the stored dtype), so
      fp16 files load into float32 models.
    - Values are read from disk on each lookup: copy them into the model one at a time (and do
      not keep them) to keep peak memory near the size of the model.
    - `state.info(key).file` names the file a key came from, for error messages.
    - Errors: FileNotFoundError (folder or files missing, naming what is there), WeightsFormatError
      (a ValueError; damaged file, named), UnsafeCheckpointError (a pickle that would run code).
    """
    files, weight_map = _locate(folder, variant)
    parts = [load_state_dict(f, dtype) for f in files]
    if weight_map is None:
        return parts[0]
    layouts = {p.layout for p in parts}
    if len(layouts) > 1:
        raise WeightsFormatError(f"{folder}: shards mix torch and Paddle layouts")
    merged = StateDict(layouts.pop(), dtype)
    for part in parts:
        for key in part:
            merged.add(key, part.info(key), part.reader(key))
    _check_shards(merged, weight_map)
    return merged
