"""The "Model hash" written into image metadata.

For a single checkpoint file it is WebUI's: the first 10 hex digits of the file's SHA-256, so
tools that look models up by hash find it. For a model folder it is the SHA-256 over the weight
files' relative paths and contents, in sorted order (a folder has no single file to hash).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from paddiff.weights import WEIGHT_SUFFIXES  # the files the loader reads are the ones hashed

_CHUNK = 1 << 20


def model_hash(location: str | Path, digits: int = 10) -> str:
    """The hash of a checkpoint file or model folder ("" if it does not exist). Hashing reads
    every weight file (seconds for a full-size model), so results are kept for the process,
    keyed by the files' sizes and modification times."""
    location = Path(location).resolve()
    files = [location] if location.is_file() else _weight_files(location)
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash(location, signature)[:digits]


@functools.lru_cache(maxsize=32)
def _hash(location: Path, signature: tuple) -> str:
    digest = hashlib.sha256()
    if location.is_file():
        _update(digest, location)
    elif location.is_dir():
        for name, _, _ in signature:
            path = Path(name)
            digest.update(path.relative_to(location).as_posix().encode() + b"\0")
            _update(digest, path)
    else:
        return ""
    return digest.hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES)


def _update(digest, path: Path) -> None:
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
