"""Keep the memory a network run frees inside the process, for the next run to reuse (glibc).

A Stable Diffusion UNet step at 256x256 allocates and frees about 800 MB of activations, many of
them larger than glibc's mmap threshold (32 MB at most), e.g. the 134 MB attention scores at
32x32 latents. glibc gives each of those its own mmap and unmaps it on free, so every step the
kernel hands the process fresh pages again: about 180,000 page faults per step, and 12-16% of the
exported UNet's time on our machines (docs/performance.md). While a network runs, `reusing_heap`
makes glibc serve large blocks from the heap instead, and keeps freed heap memory (no trimming),
so from the second step on the same pages are reused. Before the first run (loading weights,
for example) large blocks are mapped and unmapped as usual, so a model that was read and freed
leaves no gigabytes of holes in the heap; only the heap that runs grew is kept.

Cost: the process keeps (up to `KEEP_BYTES` of) the largest working set a run needed, which a
following run of the same size needs again anyway; other allocations take from it first.
$PADDIFF_REUSE_HEAP=0 turns this off.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from contextlib import contextmanager

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536  # glibc's default number of mmapped blocks
KEEP_BYTES = 2**31 - 1  # the largest value mallopt takes (an int): keep up to 2 GiB at the top

_lock = threading.Lock()
_active_runs = 0
_mallopt = None  # resolved on first use


def _glibc_mallopt():
    """glibc's mallopt, or None where there is none (macOS, Windows, musl) or it is turned off."""
    if os.environ.get("PADDIFF_REUSE_HEAP", "1") == "0":
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Once, for the life of the process: freed memory at the top of the heap stays for reuse.
    if mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) != 1:
        return None
    return mallopt


@contextmanager
def reusing_heap():
    """Serve large allocations from the heap while the body runs (nested and threads: the
    setting holds while any run is active)."""
    global _active_runs, _mallopt
    with _lock:
        if _mallopt is None:
            _mallopt = _glibc_mallopt() or False
        if _mallopt and _active_runs == 0:
            _mallopt(M_MMAP_MAX, 0)
        _active_runs += 1
    try:
        yield
    finally:
        with _lock:
            _active_runs -= 1
            if _mallopt and _active_runs == 0:
                _mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
