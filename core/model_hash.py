"""The "Model hash" written into image metadata.

For a single checkpoint file it is WebUI's: the first 10 hex digits of the file's SHA-256, so
tools that look models up by hash find it. For a model folder it is the SHA-256 over the weight
files' relative paths and contents, in sorted order (a folder has no single file to hash).

Hashing reads every byte of the weights (2.5 s for SD 1.5's 3.4 GB, on every run), so hashes
are also kept on disk, as the WebUI keeps them: in `model-hashes.json` next to the program
cache ($PADDIFF_CACHE_DIR, else ~/.cache/paddiff), keyed by the location and each weight
file's path, size and modification time; a changed file is hashed again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
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


def hash_store() -> Path:
    """The file that keeps hashes between runs."""
    if os.environ.get("PADDIFF_CACHE_DIR"):
        return Path(os.environ["PADDIFF_CACHE_DIR"]) / "model-hashes.json"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paddiff" / "model-hashes.json"


@functools.lru_cache(maxsize=32)
def _hash(location: Path, signature: tuple) -> str:
    if not signature:
        return _compute(location, signature)
    key = hashlib.sha256(json.dumps([str(location), signature]).encode()).hexdigest()
    stored = _read_store()
    if key not in stored:
        stored[key] = _compute(location, signature)
        _write_store(stored)
    return stored[key]


def _read_store() -> dict:
    """The stored hashes; an unreadable or damaged store counts as empty (it is only a cache)."""
    try:
        stored = json.loads(hash_store().read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _write_store(stored: dict) -> None:
    """Written whole to a temporary file and renamed, so a reader never sees half a store; a
    read-only cache folder just means hashing again next time."""
    path = hash_store()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as stream:
            json.dump(stored, stream)
        os.replace(stream.name, path)
    except OSError:
        pass


def _compute(location: Path, signature: tuple) -> str:
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
