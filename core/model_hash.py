"""The "Model hash" written into image metadata.

For a single checkpoint file it is WebUI's: the first 10 hex digits of the file's SHA-256, so
tools that look models up by hash find it. For a model folder it is the SHA-256 over the weight
files' relative paths and contents, in sorted order (a folder has no single file to hash).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pdparams"}
_CHUNK = 1 << 20


def model_hash(location: str | Path, digits: int = 10) -> str:
    location = Path(location)
    digest = hashlib.sha256()
    if location.is_file():
        _update(digest, location)
    elif location.is_dir():
        files = sorted(p for p in location.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        for path in files:
            digest.update(path.relative_to(location).as_posix().encode() + b"\0")
            _update(digest, path)
    else:
        return ""
    return digest.hexdigest()[:digits]


def _update(digest, path: Path) -> None:
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
