"""Freed activation memory stays in the process between runs (glibc), and only once runs grew it."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from paddiff.execution import heap

needs_glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# In a fresh process (malloc's state is process-wide): minor page faults of malloc-ing, touching
# and freeing a 64 MB block (above glibc's mmap threshold) four times, as Paddle's CPU allocator
# does for big activations, first outside any run, then inside runs (after one round that lets
# the heap grow). Not through NumPy, which asks for huge pages on big arrays.
FAULTS_SCRIPT = """
import ctypes, json, resource
from paddiff.execution.heap import reusing_heap

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 * 2**20

def one_block():
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        one_block()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

outside = faults()
with reusing_heap():
    one_block()
with reusing_heap():
    inside = faults()
print(json.dumps({"outside": outside, "inside": inside}))
"""


@needs_glibc
def test_large_blocks_reuse_their_pages_in_runs():
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True
    )
    faults = json.loads(result.stdout.strip().splitlines()[-1])
    pages_per_round = 64 * 2**20 // 4096
    assert faults["outside"] > 3 * pages_per_round  # mapped and unmapped: fresh pages each time
    assert faults["inside"] < pages_per_round / 10  # the same heap pages every time


@needs_glibc
def test_nested_and_finished_runs_restore_the_default(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "_mallopt", lambda option, value: calls.append((option, value)) or 1)
    with heap.reusing_heap():
        with heap.reusing_heap():
            pass
        assert calls == [(heap.M_MMAP_MAX, 0)]
    assert calls == [(heap.M_MMAP_MAX, 0), (heap.M_MMAP_MAX, heap.DEFAULT_MMAP_MAX)]


def test_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("PADDIFF_REUSE_HEAP", "0")
    assert heap._glibc_mallopt() is None
