"""Single tensors of a program's parameter file, without loading the program.

`paddle.jit.save` writes all weights into one `.pdiparams` file (Paddle's `save_combine`): the
tensors in sorted order of their variable names, each as
    uint32 version (0) | uint64 LoD levels (0 here) | uint32 version (0) |
    int32 size of a TensorDesc protobuf | the TensorDesc (data type, dims) | the raw data.
Knowing where each tensor starts lets a LoRA read the original of just the layers it changes
(memory-mapped, no copy of the model kept), and lets a changed parameter file be written by
copying the unchanged tensors byte for byte instead of holding every weight in memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Paddle's VarType codes for the dtypes weights have
DTYPES = {5: np.float32, 6: np.float64, 4: np.float16, 22: np.uint16, 3: np.int64, 2: np.int32}


@dataclass(frozen=True)
class Entry:
    start: int  # where the tensor's record starts
    data: int  # where its raw data starts
    end: int  # where the record ends
    shape: tuple[int, ...]
    dtype: np.dtype


def _varint(buffer: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _tensor_desc(desc: bytes) -> tuple[int, tuple[int, ...]]:
    """(data type, dims) of a serialized TensorDesc (field 1: type, field 2: dims)."""
    i, dtype, dims = 0, None, []
    while i < len(desc):
        tag, i = _varint(desc, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(desc, i)
            if field == 1:
                dtype = value
            else:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif wire == 2:  # packed dims
            length, i = _varint(desc, i)
            end = i + length
            while i < end:
                value, i = _varint(desc, i)
                dims.append(value)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in a TensorDesc")
    return dtype, tuple(dims)


def index(path: str | Path, names: list[str]) -> dict[str, Entry]:
    """Where each of `names` (the file's variables, in the file's sorted order) is in `path`.
    Raises ValueError if the file is not laid out that way."""
    path = Path(path)
    entries = {}
    with open(path, "rb") as stream:
        position = 0
        for name in sorted(names):
            stream.seek(position)
            head = stream.read(16)
            if len(head) < 16:
                raise ValueError(f"{path}: ends before {name}")
            _, lod_levels = struct.unpack("<IQ", head[:12])
            if lod_levels:
                raise ValueError(f"{path}: {name} has LoD, which weights never have")
            (size,) = struct.unpack("<i", stream.read(4))
            code, shape = _tensor_desc(stream.read(size))
            if code not in DTYPES:
                raise ValueError(f"{path}: {name} has data type code {code}")
            dtype = np.dtype(DTYPES[code])
            data = position + 20 + size
            end = data + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            entries[name] = Entry(position, data, end, shape, dtype)
            position = end
        if position != path.stat().st_size:
            raise ValueError(f"{path}: {path.stat().st_size - position} bytes after the weights")
    return entries


def read(path: str | Path, entry: Entry) -> np.ndarray:
    """One tensor (a private copy; the file is memory-mapped only while it is read)."""
    mapped = np.memmap(path, dtype=entry.dtype, mode="r", offset=entry.data, shape=entry.shape)
    return np.array(mapped)


def mapped(path: str | Path, entry: Entry) -> np.ndarray:
    """One tensor as a view of the file (no copy; valid while the file is unchanged). Mapped
    copy-on-write: writable for APIs that insist on it, while the file itself never changes."""
    return np.memmap(path, dtype=entry.dtype, mode="c", offset=entry.data, shape=entry.shape)


def write(out: str | Path, entries: dict[str, Entry], values: dict, sources: dict) -> None:
    """A parameter file with `entries`' layout: `values[name]` where given, else the bytes of
    the record `sources[name]` = (path, Entry) (a file of the same layout). Only the replaced
    weights are ever in memory."""
    files = {}
    try:
        with open(out, "wb") as target:
            for name in sorted(entries):
                entry = entries[name]
                path, found = sources[name]
                source = files.get(path) or files.setdefault(path, open(path, "rb"))
                source.seek(found.start)
                if name in values:
                    value = np.ascontiguousarray(values[name], dtype=entry.dtype)
                    if value.shape != entry.shape:
                        raise ValueError(f"{name}: shape {value.shape}, expected {entry.shape}")
                    target.write(source.read(entry.data - entry.start))  # the same header
                    target.write(value.tobytes())
                else:
                    _copy(source, target, found.end - found.start)
    finally:
        for stream in files.values():
            stream.close()


def _copy(source, target, length: int, chunk: int = 1 << 24) -> None:
    while length > 0:
        block = source.read(min(chunk, length))
        if not block:
            raise ValueError("parameter file ended early")
        target.write(block)
        length -= len(block)
