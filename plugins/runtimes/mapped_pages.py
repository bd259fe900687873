"""Give back the resident pages of a memory-mapped file (Linux), so a runtime that has copied
the weights it maps does not keep them twice.

OpenVINO maps an IR's .bin file and, when it compiles, packs the weights into its own layout;
the mapped pages it read stay resident in the process although the big weights are never read
from them again (SD 1.5's float32 UNet: 6.9 GB resident after compiling, 3.6 GB once the
mapped pages are released, bit-identical outputs, and no page read back over later calls;
docs/performance.md). Weights used in place, as some of a tiny model's are, are simply read
back on the next call. `MADV_DONTNEED` on a read-only
private file mapping drops the process's pages; the file's data stays in the kernel's page
cache (reclaimable), and a later read faults the page back in with the same bytes. Mappings
that are writable are never touched (their pages may hold changes that only exist there).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from pathlib import Path

MADV_DONTNEED = 4


def release(path) -> int:
    """Drop this process's resident pages of every read-only mapping of `path`; bytes released
    (0 where the platform has no /proc/self/maps or madvise)."""
    if not sys.platform.startswith("linux"):
        return 0
    target = str(Path(path).resolve())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or fields[5].strip() != target or "w" in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
                released += end - start
    return released


@contextlib.contextmanager
def released_while(path, interval_s: float = 0.2):
    """Keep releasing `path`'s mapped pages every `interval_s` while the block runs and once
    after it: a compile that reads the whole file then holds about one copy at a time."""
    stop = threading.Event()

    def keep_releasing():
        while not stop.wait(interval_s):
            release(path)

    worker = threading.Thread(target=keep_releasing, name="paddiff-release-pages", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
        release(path)
