"""Releasing a mapped file's resident pages (plugins/runtimes/mapped_pages.py), and the OpenVINO
back end holding no resident pages of its IR's weights once it has compiled."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from paddiff.plugins.runtimes import mapped_pages

from support.processes import resident_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


def test_released_pages_read_back_the_same_bytes(tmp_path):
    data = np.random.default_rng(0).standard_normal(4 << 20).astype(np.float32)  # 16 MB
    path = tmp_path / "weights.bin"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r")
    total = float(mapped.sum(dtype=np.float64))  # touches every page
    assert resident_bytes(path) > 15 << 20
    assert mapped_pages.release(path) >= data.nbytes
    assert resident_bytes(path) < 1 << 20
    assert float(mapped.sum(dtype=np.float64)) == total  # faulted back in, unchanged
    np.testing.assert_array_equal(mapped[::4096], data[::4096])


def test_writable_mappings_are_left_alone(tmp_path):
    path = tmp_path / "scratch.bin"
    np.zeros(1 << 20, np.float32).tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r+")
    mapped[:] = 7.0  # changes that live only in this mapping until flushed
    assert mapped_pages.release(path) == 0
    assert float(mapped[123]) == 7.0


def test_released_while_releases_during_and_after(tmp_path):
    path = tmp_path / "weights.bin"
    np.ones(4 << 20, np.float32).tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r")
    with mapped_pages.released_while(path, interval_s=0.01):
        assert float(mapped.sum()) == 4 << 20
    assert resident_bytes(path) < 1 << 20
