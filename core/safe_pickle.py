"""Reading pickled checkpoints (PyTorch `.bin`/`.ckpt`/`.pt`, Paddle `.pdparams`) without running them.

A pickle is a small program: its GLOBAL opcodes name any importable callable and REDUCE calls it,
so `pickle.load` on a downloaded checkpoint can run `os.system`. Here every global a pickle names
goes through `find_class`, which only knows the handful of names that tensor storage needs
(PyTorch's tensor-rebuilding functions and storage types, `OrderedDict`, NumPy's array
reconstruction for Paddle files). Each is mapped to a function of ours that builds NumPy arrays
(or a lazy reference to them); anything else raises `UnsafeCheckpointError` before it is called.
torch is never imported.

Tensor data is not read while unpickling: a tensor becomes a `TensorRef` (storage, offset, shape,
strides) whose bytes are read from the file when asked for, one tensor at a time.

Formats:
- PyTorch zip (torch >= 1.6): `<archive>/data.pkl` plus one zip entry per storage.
- PyTorch legacy: magic number, protocol, sys info, the object, storage keys, then raw storages.
- Paddle (`paddle.save` of a state dict): a plain pickle of a dict of NumPy arrays.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A pickled checkpoint names something other than tensor storage; nothing was executed."""


class CheckpointFormatError(ValueError):
    """A pickled checkpoint is damaged or in a layout we do not read."""


# -- storages and tensors -------------------------------------------------------------------------

BFLOAT16 = "bfloat16"  # NumPy has no bfloat16; its bits are the top half of a float32


class _NoBuild:
    """Objects a pickle can reach but must not modify: its BUILD opcode would call
    `__setstate__`, or else write `__dict__` directly, bypassing `frozen`."""

    def __setstate__(self, state):
        raise UnsafeCheckpointError(f"checkpoint tries to modify {self!r}")


@dataclass(frozen=True)
class StorageType(_NoBuild):
    """What `torch.FloatStorage` and friends stand for here: an element dtype."""

    dtype: str  # a NumPy dtype name, or BFLOAT16

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == BFLOAT16 else np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Storage(_NoBuild):
    """A flat run of `numel` elements at byte `offset` of a file (or bytes already in memory)."""

    type: StorageType
    numel: int
    read_bytes: Callable[[int, int], bytes | np.ndarray]  # (byte start, byte count) -> raw data

    def elements(self, start: int, count: int) -> np.ndarray:
        """`count` elements from element `start`, as a NumPy array (bfloat16 widened)."""
        if start < 0 or start + count > self.numel:
            raise CheckpointFormatError(
                f"tensor reads elements {start}..{start + count} of a storage of {self.numel}"
            )
        size = self.type.itemsize
        raw = self.read_bytes(start * size, count * size)
        if self.type.dtype == BFLOAT16:
            return bfloat16_to_float32(np.frombuffer(raw, dtype="<u2"))
        return np.frombuffer(raw, dtype=np.dtype(self.type.dtype).newbyteorder("<")).astype(
            np.dtype(self.type.dtype), copy=False
        )


@dataclass(frozen=True)
class TensorRef(_NoBuild):
    """A tensor as the pickle describes it; `read()` loads its values."""

    storage: Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.type.dtype

    def read(self) -> np.ndarray:
        count = int(np.prod(self.shape, dtype=np.int64))
        if count == 0:
            return np.zeros(self.shape, dtype=_numpy_dtype(self.dtype))
        if self.stride == _contiguous_strides(self.shape):
            return self.storage.elements(self.offset, count).reshape(self.shape)
        # A view with other strides (a transposed or sliced tensor): read the span it covers.
        span = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
        flat = self.storage.elements(self.offset, span)
        strides = tuple(s * flat.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat, self.shape, strides).copy()


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is float32 with the low 16 mantissa bits dropped: shift them back in as zeros."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _numpy_dtype(name: str) -> np.dtype:
    return np.dtype(np.float32 if name == BFLOAT16 else name)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


# -- the allowed globals ----------------------------------------------------------------------------


class _Safe:
    """An allowed global: a callable that cannot be re-pointed by a pickle's BUILD opcode."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)

    def __setattr__(self, key, value):
        raise UnsafeCheckpointError(f"checkpoint tries to modify {self.name}")

    def __setstate__(self, state):  # what a pickle's BUILD opcode calls
        raise UnsafeCheckpointError(f"checkpoint tries to modify {self.name}")

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    if not isinstance(storage, (Storage, _LegacyStorage)):
        raise CheckpointFormatError("tensor without a storage")
    return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data  # a Parameter is its tensor; requires_grad and hooks do not matter here


def _rebuild_from_type(func, _new_type, args, _state):
    return func(*args)  # `func` came through find_class too, so it is one of ours


class _Frozen(type):
    def __setattr__(cls, key, value):  # a pickle's BUILD on the class itself
        raise UnsafeCheckpointError(f"checkpoint tries to modify {cls.__name__}")


class _Ignored(metaclass=_Frozen):
    """Stands in for harmless bookkeeping objects (training callbacks) that hold no tensors."""

    def __setstate__(self, state):
        pass


_NDARRAY = object()  # what `numpy.ndarray` means inside a pickle: only a marker


def _reconstruct_ndarray(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise UnsafeCheckpointError("numpy _reconstruct asked for a class other than ndarray")
    return np.ndarray.__new__(np.ndarray, shape, typecode)  # filled by ndarray.__setstate__


def _frombuffer(buffer, dtype, shape, order):
    # protocol-5 pickles of arrays: numpy._core.numeric._frombuffer(bytearray, dtype, shape, order)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


def _encode(text, encoding="latin1"):
    # protocol-2 pickles store bytes as `_codecs.encode(str, "latin1")`
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError("unexpected use of _codecs.encode")
    return text.encode("latin1")


_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": BFLOAT16,
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {}
    for name, dtype in _STORAGE_DTYPES.items():
        allowed["torch", name] = StorageType(dtype)
    functions = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch", "Size"): tuple,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "tuple"): tuple,  # paddle.save writes tensors as tuple((name, array))
        ("__builtin__", "set"): set,
        ("_codecs", "encode"): _encode,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    }
    for (module, name), fn in functions.items():
        allowed[module, name] = _Safe(f"{module}.{name}", fn)
    # Classes that may be instantiated (NEWOBJ needs a real class) but only ever as _Ignored.
    for marker in [
        ("torch", "Tensor"),
        ("torch.nn.parameter", "Parameter"),
        ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
        ("lightning.pytorch.callbacks.model_checkpoint", "ModelCheckpoint"),
    ]:
        allowed[marker] = _Ignored
    allowed["numpy", "ndarray"] = _NDARRAY
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals are limited to ALLOWED_GLOBALS."""

    def __init__(self, file, source: Path, persistent: Callable[[tuple], object] | None = None):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._persistent = persistent

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._source}: refusing to load this checkpoint: its pickle calls "
                f"{module}.{name}, which is not tensor data. Nothing was executed. Only load "
                "checkpoints you trust, or use a .safetensors file."
            ) from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointFormatError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


# -- file formats ----------------------------------------------------------------------------------


# what a damaged or malformed pickle (or a cut-off zip checkpoint) raises while being read
_DAMAGED = (
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
)


def load_pickled_tensors(path: Path) -> dict[str, TensorRef | np.ndarray]:
    """The tensors of a pickled checkpoint, by key: `TensorRef`s (PyTorch) or arrays (Paddle).

    Lightning checkpoints keep the weights under "state_dict"; that dict is returned. Entries
    that are not tensors (step counters and the like) are left out.
    """
    return _tensors_of(load_pickled_object(path), path)


def load_pickled_object(path: Path):
    """The whole object of a pickled file (nested dicts, lists, strings, numbers, with tensors as
    `TensorRef`s or arrays), through the same restricted unpickler: for files whose tensors are
    not a flat state dict, such as A1111's textual-inversion embeddings."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head.startswith(b"PK"):
            obj = _load_torch_zip(path)
        else:
            obj = _load_plain_or_legacy(path)
    except UnsafeCheckpointError as exc:
        if str(path) in str(exc):
            raise
        raise UnsafeCheckpointError(f"{path}: refusing to load this checkpoint: {exc}") from None
    except CheckpointFormatError:
        raise
    except _DAMAGED as exc:
        raise CheckpointFormatError(f"{path}: not a readable checkpoint ({exc})") from exc
    return obj


_ARRAYS = (TensorRef, np.ndarray)


def _tensors_of(obj, path: Path) -> dict[str, TensorRef | np.ndarray]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    tensors: dict[str, TensorRef | np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], _ARRAYS):
            value = value[1]  # paddle.save's (name, array) form of a tensor
        if isinstance(value, _ARRAYS):
            tensors[str(key)] = value
    return _join_paddle_slices(obj, tensors)


def _array(value) -> np.ndarray:
    return value.read() if isinstance(value, TensorRef) else value


def _join_paddle_slices(obj: dict, tensors: dict) -> dict:
    # paddle.save with protocol < 4 splits arrays over 1 GB into "key@@.0", "key@@.1", ...
    for key, info in (obj.get("UnpackBigParamInfor@@") or {}).items():
        parts = [_array(tensors.pop(part)) for part in info["slices"]]
        tensors[key] = np.concatenate([p.ravel() for p in parts]).reshape(info["OriginShape"])
    return tensors


def _load_torch_zip(path: Path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise CheckpointFormatError(f"{path}: a zip file without data.pkl is not a checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
            raise CheckpointFormatError(f"{path}: big-endian checkpoints are not supported")
        entries = {info.filename: info for info in archive.infolist()}
        payload = archive.read(pickles[0])

    def persistent(pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage" or not isinstance(storage_type, StorageType):
            raise CheckpointFormatError(f"{path}: unexpected persistent id {pid!r}")
        info = entries.get(f"{prefix}data/{key}")
        if info is None:
            raise CheckpointFormatError(f"{path}: storage {key} is missing from the archive")
        if info.file_size < numel * storage_type.itemsize:
            raise CheckpointFormatError(f"{path}: storage {key} is shorter than its tensor")
        return Storage(storage_type, int(numel), _zip_entry_reader(path, info))

    return RestrictedUnpickler(io.BytesIO(payload), path, persistent).load()


def _zip_entry_reader(path: Path, info: zipfile.ZipInfo):
    if info.compress_type != zipfile.ZIP_STORED:  # torch never compresses; read it whole then

        def read_compressed(start: int, count: int) -> bytes:
            with zipfile.ZipFile(path) as archive:
                return archive.read(info.filename)[start : start + count]

        return read_compressed
    with open(path, "rb") as f:  # the data follows the local header: 30 bytes + name + extra
        f.seek(info.header_offset)
        local = f.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    data_start = info.header_offset + 30 + name_len + extra_len
    return _file_reader(path, data_start)


def _file_reader(path: Path, base: int):
    def read(start: int, count: int) -> np.ndarray:
        if base + start + count > path.stat().st_size:
            raise CheckpointFormatError(f"{path}: file ends inside a tensor (truncated?)")
        if count == 0:
            return np.zeros(0, np.uint8)
        # memory-mapped: pages are read when used and released with the array
        return np.asarray(
            np.memmap(path, dtype=np.uint8, mode="c", offset=base + start, shape=(count,))
        )

    return read


def _load_plain_or_legacy(path: Path):
    storages: dict[str, tuple[StorageType, int, tuple | None]] = {}
    from paddiff.lazy_pickle import scan_pickle

    located = scan_pickle(path)  # paddle.save's pickles, with the arrays left in the file
    if located is not None and located != TORCH_LEGACY_MAGIC:
        return located
    with open(path, "rb") as f:
        first = RestrictedUnpickler(f, path).load()
        if first != TORCH_LEGACY_MAGIC:
            return first  # a plain pickle beyond what scan_pickle follows
        RestrictedUnpickler(f, path).load()  # protocol version
        RestrictedUnpickler(f, path).load()  # sys info
        refs: dict[str, Storage] = {}

        def persistent(pid):
            kind, storage_type, key, _location, numel, view = pid[:6]
            if kind != "storage" or not isinstance(storage_type, StorageType):
                raise CheckpointFormatError(f"{path}: unexpected persistent id {pid!r}")
            storages[key] = (storage_type, int(numel), view)
            return _LegacyStorage(key, storage_type, refs)

        obj = RestrictedUnpickler(f, path, persistent).load()
        keys = RestrictedUnpickler(f, path).load()
        position = f.tell()
        for key in keys:  # each storage: int64 element count, then the raw elements
            storage_type = storages[key][0]
            f.seek(position)
            (numel,) = struct.unpack("<q", f.read(8))
            refs[key] = Storage(storage_type, numel, _file_reader(path, position + 8))
            position += 8 + numel * storage_type.itemsize
    return _resolve_legacy(obj, refs, storages)


@dataclass(frozen=True)
class _LegacyStorage(_NoBuild):
    key: str
    type: StorageType
    refs: dict


def _resolve_legacy(obj, refs, storages):
    # Storages were only located after the object was unpickled; swap the placeholders now.
    def storage_of(placeholder: _LegacyStorage) -> tuple[Storage, int]:
        view = storages[placeholder.key][2]
        if view is None:
            return refs[placeholder.key], 0
        return refs[placeholder.key], int(view[1])

    def fix(value):
        if isinstance(value, TensorRef) and isinstance(value.storage, _LegacyStorage):
            storage, shift = storage_of(value.storage)
            return TensorRef(storage, value.offset + shift, value.shape, value.stride)
        return value

    if isinstance(obj, dict):
        if isinstance(obj.get("state_dict"), dict):
            obj["state_dict"] = {k: fix(v) for k, v in obj["state_dict"].items()}
        else:
            obj = type(obj)((k, fix(v)) for k, v in obj.items())
    return obj
