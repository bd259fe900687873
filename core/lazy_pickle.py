"""Paddle `.pdparams` files read lazily: array data located in the pickle, not loaded.

`paddle.save(state_dict)` pickles NumPy arrays whole, so unpickling holds every array in memory
before a single one is copied into a network (peak: parameters + file). This module walks the
pickle's opcodes instead (`pickletools.genops`), runs the few that build such a file on a small
stack machine, and records where each array's bytes lie in the file; the arrays are then
memory-mapped one at a time like safetensors.

Only ALLOWED_GLOBALS of `paddiff.safe_pickle` can be named, and only its harmless functions are
called. An opcode or construct outside this subset returns None, and the caller falls back to
the restricted unpickler (same safety, more memory).
"""

from __future__ import annotations

import pickletools
from pathlib import Path

import numpy as np
from paddiff.safe_pickle import (
    _NDARRAY,
    ALLOWED_GLOBALS,
    Storage,
    StorageType,
    TensorRef,
    UnsafeCheckpointError,
    _contiguous_strides,
    _file_reader,
    _frombuffer,
    _reconstruct_ndarray,
    _Safe,
)

SMALL = 4096  # bytes payloads up to this size are kept (dtype codes, scalars); larger are located


class _Located:
    """A bytes payload left in the file: `length` bytes at `offset`."""

    def __init__(self, offset: int, length: int):
        self.offset, self.length = offset, length


class _PendingArray:
    """`numpy._reconstruct(ndarray, ...)` before its BUILD supplies shape, dtype and data."""

    value: TensorRef | np.ndarray | None = None


class _Unsupported(Exception):
    pass


_NOT_FOLLOWED = (
    _Unsupported,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    EOFError,
    RecursionError,
)


_MARK = object()
_PUSH_ARG = {
    "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BININT", "BININT1", "BININT2", "LONG1",
    "BINFLOAT", "BINSTRING", "SHORT_BINSTRING",
}  # fmt: skip
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
# opcode + length field
_BYTES_HEADER = {"SHORT_BINBYTES": 2, "BINBYTES": 5, "BINBYTES8": 9, "BYTEARRAY8": 9}


def scan_pickle(path: Path):
    """The unpickled object with located arrays as `TensorRef`s, or None if the pickle uses
    anything beyond the subset paddle.save writes."""
    try:
        with open(path, "rb") as f:
            return _Machine(path).run(pickletools.genops(f))
    except _NOT_FOLLOWED:  # the restricted unpickler then reads it (or names the damage)
        return None


class _Machine:
    def __init__(self, path: Path):
        self.path = path
        self.stack: list = []
        self.memo: dict[int, object] = {}

    def run(self, ops):
        for opcode, arg, pos in ops:
            name = opcode.name
            if name == "STOP":
                return _finish(self.stack.pop())
            self.step(name, arg, pos)
        raise _Unsupported  # no STOP: let the unpickler report the damage

    def step(self, name: str, arg, pos: int) -> None:  # noqa: C901 (one branch per opcode)
        stack = self.stack
        if name in ("PROTO", "FRAME"):
            return
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in _BYTES_HEADER:
            located = len(arg) > SMALL
            stack.append(_Located(pos + _BYTES_HEADER[name], len(arg)) if located else arg)
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(self.memo[arg])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            stack.append(tuple(self.pop_mark()))
        elif name == "GLOBAL":
            stack.append(self.find(*arg.split(" ", 1)))
        elif name == "STACK_GLOBAL":
            qualname, module = stack.pop(), stack.pop()
            stack.append(self.find(module, qualname))
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            stack.append(self.call(func, args))
        elif name == "BUILD":
            state = stack.pop()
            self.build(stack[-1], state)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            stack[-1][key] = value
        elif name == "SETITEMS":
            items = self.pop_mark()  # before looking at stack[-1]: the dict is under the mark
            stack[-1].update(zip(items[::2], items[1::2], strict=True))
        elif name == "APPENDS":
            items = self.pop_mark()
            stack[-1].extend(items)
        elif name == "APPEND":
            stack[-2].append(stack.pop())
        else:
            raise _Unsupported

    def pop_mark(self) -> list:
        stack = self.stack
        at = len(stack) - 1 - stack[::-1].index(_MARK)
        items = stack[at + 1 :]
        del stack[at:]
        return items

    def find(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.path}: refusing to load this checkpoint: its pickle calls "
                f"{module}.{name}, which is not tensor data. Nothing was executed."
            ) from None

    def call(self, func, args):
        if isinstance(func, _Safe) and func.fn is _frombuffer and isinstance(args[0], _Located):
            raw, dtype, shape, order = args  # protocol 5's form of an array
            return self.located_array(raw, dtype, shape, order == "F")
        if any(isinstance(a, _Located) for a in args):
            raise _Unsupported
        if isinstance(func, _Safe) and func.fn is _reconstruct_ndarray:
            if args[0] is not _NDARRAY:
                raise UnsafeCheckpointError(f"{self.path}: _reconstruct of a non-ndarray class")
            return _PendingArray()
        if isinstance(func, _Safe):
            return func(*args)  # one of safe_pickle's harmless functions
        raise _Unsupported

    def build(self, obj, state) -> None:
        if isinstance(obj, np.dtype):
            obj.__setstate__(state)  # NumPy's own dtype state: byte order, flags
        elif isinstance(obj, _PendingArray):
            obj.value = self.array(state)
        else:
            raise _Unsupported

    def array(self, state) -> TensorRef | np.ndarray:
        _version, shape, dtype, fortran, raw = state
        shape = tuple(int(n) for n in shape)
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise _Unsupported
        if not isinstance(raw, _Located):
            order = "F" if fortran else "C"
            return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy()
        return self.located_array(raw, dtype, shape, fortran)

    def located_array(self, raw: _Located, dtype, shape, fortran: bool) -> TensorRef:
        shape = tuple(int(n) for n in shape)
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise _Unsupported
        count = int(np.prod(shape, dtype=np.int64))
        if raw.length != count * dtype.itemsize or not dtype.isnative or dtype.byteorder == ">":
            raise _Unsupported
        storage = Storage(StorageType(dtype.name), count, _file_reader(self.path, raw.offset))
        strides = _contiguous_strides(shape)
        if fortran:  # column-major: the first axis varies fastest
            strides = tuple(reversed(_contiguous_strides(tuple(reversed(shape)))))
        return TensorRef(storage, 0, shape, strides)


def _finish(obj):
    """Replace pending arrays by what their BUILD made, through dicts, lists and tuples."""
    if isinstance(obj, _PendingArray):
        if obj.value is None:
            raise _Unsupported
        return obj.value
    if isinstance(obj, dict):
        return type(obj)((k, _finish(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_finish(v) for v in obj)
    return obj
