"""The program cache as a user sees it: what it holds, how much room it takes, and keeping it
within a size limit by removing the programs used least recently (`paddiff cache`).

An SD 1.5 UNet program is 3.4 GB, one per model and input-shape family, so an unbounded cache
fills a disk. The layout is ExportCache's: ROOT/<model key>/<component-shapes>/program.*; each
program folder is one entry. Using a program touches its `last-used` file; after every export,
entries beyond the limit ($PADDIFF_CACHE_LIMIT, default 20G; 0 for none) go, oldest use first,
never the program just written.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

LIMIT_ENV = "PADDIFF_CACHE_LIMIT"
DEFAULT_LIMIT = 20 * 2**30
MARKER = "last-used"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class CacheEntry:
    path: Path  # the program's folder
    model: str  # the model's fingerprint
    program: str  # component and input shapes, e.g. "unet-Nx4xNxN_N_NxNx768"
    size: int  # bytes
    last_used: float  # seconds since the epoch


def parse_size(text: str) -> int:
    """Bytes for "20G", "500M", "1.5T" or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 20G, 500M, 0 for no limit)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def cache_limit() -> int:
    """The size limit in bytes (0: none), from $PADDIFF_CACHE_LIMIT."""
    value = os.environ.get(LIMIT_ENV)
    return DEFAULT_LIMIT if value is None else parse_size(value)


def entries(root: str | Path) -> list[CacheEntry]:
    """Every program folder under `root`, least recently used first."""
    root = Path(root)
    found = []
    for folder in root.glob("*/*"):
        if not folder.is_dir() or not any(folder.glob("program.*")):
            continue
        files = [f for f in folder.iterdir() if f.is_file()]
        marker = folder / MARKER
        used = marker.stat().st_mtime if marker.exists() else max(f.stat().st_mtime for f in files)
        size = sum(f.stat().st_size for f in files)
        found.append(CacheEntry(folder, folder.parent.name, folder.name, size, used))
    return sorted(found, key=lambda entry: entry.last_used)


def mark_used(program_folder: str | Path) -> None:
    """Record that the program in this folder was just used (best effort: a read-only cache
    still runs)."""
    try:
        (Path(program_folder) / MARKER).touch()
    except OSError:
        pass


def remove(entry: CacheEntry) -> None:
    """Take the folder out of the cache in one rename (a reader sees the whole program or none),
    then delete it."""
    doomed = entry.path.with_name(f".removing-{uuid.uuid4().hex}")
    try:
        entry.path.rename(doomed)
    except FileNotFoundError:  # another process removed it first
        return
    shutil.rmtree(doomed, ignore_errors=True)
    if not any(entry.path.parent.iterdir()):
        entry.path.parent.rmdir()


def evict(root: str | Path, limit: int, keep=()) -> list[CacheEntry]:
    """Remove the least recently used entries until the cache holds at most `limit` bytes
    (0: no limit); folders in `keep` stay whatever their age. Returns what was removed."""
    if limit <= 0:
        return []
    keep = {Path(k).resolve() for k in keep}
    listed = entries(root)
    total = sum(entry.size for entry in listed)
    removed = []
    for entry in listed:
        if total <= limit:
            break
        if entry.path.resolve() in keep:
            continue
        remove(entry)
        total -= entry.size
        removed.append(entry)
    return removed


def age(entry: CacheEntry, now: float | None = None) -> str:
    seconds = (now or time.time()) - entry.last_used
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit} ago"
    return "just now"
