"""The program cache stays within its size limit (least recently used programs go first, never
the one just exported), and `paddiff cache list` / `clear` show and empty it."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from paddiff.cli import main
from paddiff.execution import ExportCache, InputSpec, Network, cache_folder, set_execution
from paddle import nn


def fake_program(root, model, program, size, used):
    folder = root / model / program
    folder.mkdir(parents=True)
    (folder / "program.json").write_bytes(b"p")
    (folder / "program.pdiparams").write_bytes(b"w" * (size - 1))
    (folder / cache_folder.MARKER).touch()
    os.utime(folder / cache_folder.MARKER, (used, used))
    return folder


@pytest.fixture()
def cache(tmp_path):
    now = time.time()
    fake_program(tmp_path, "m1", "unet-a", 400, now - 300)
    fake_program(tmp_path, "m1", "vae-a", 100, now - 10)
    fake_program(tmp_path, "m2", "unet-b", 300, now - 100)
    (tmp_path / "model-hashes.json").write_text("{}")  # not a program: never listed or removed
    return tmp_path


@pytest.mark.parametrize(
    "text,size", [("20G", 20 * 2**30), ("500M", 500 * 2**20), ("1.5K", 1536), ("123", 123)]
)
def test_sizes_read_as_people_write_them(text, size):
    assert cache_folder.parse_size(text) == size


def test_a_size_that_is_not_one_is_refused_with_examples():
    with pytest.raises(ValueError, match="not a size: 'lots'.*20G"):
        cache_folder.parse_size("lots")


def test_entries_are_listed_least_recently_used_first(cache):
    listed = cache_folder.entries(cache)
    assert [e.program for e in listed] == ["unet-a", "unet-b", "vae-a"]
    assert [e.size for e in listed] == [400, 300, 100]


def test_eviction_removes_the_oldest_until_within_the_limit_and_keeps_what_it_is_told(cache):
    removed = cache_folder.evict(cache, 550, keep=[cache / "m1" / "unet-a"])
    assert [e.program for e in removed] == ["unet-b"]  # the oldest is kept, the next goes
    assert sorted(e.program for e in cache_folder.entries(cache)) == ["unet-a", "vae-a"]
    assert not (cache / "m2").exists()  # an emptied model folder goes too
    assert (cache / "model-hashes.json").exists()
    assert cache_folder.evict(cache, 0) == []  # 0: no limit


def test_cli_lists_and_clears(cache, capsys):
    assert main(["cache", "list", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "3 programs" in out and "m2/unet-b" in out
    assert main(["cache", "clear", "--keep", "550", "--cache-dir", str(cache)]) == 0
    assert "removed 1 programs" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert cache_folder.entries(cache) == []


def test_an_export_keeps_the_cache_within_the_limit(tmp_path, monkeypatch):
    """Two tiny programs do not fit a limit of one: the older one goes, the new one stays."""

    def doubler(width):
        return Network(f"doubler{width}", nn.Linear(width, width), [InputSpec("x", (None, width))])

    first, second = doubler(3), doubler(5)
    set_execution(first, "static", cache=ExportCache(tmp_path))
    first(np.ones((1, 3), np.float32))
    (only,) = cache_folder.entries(tmp_path)
    monkeypatch.setenv(cache_folder.LIMIT_ENV, str(only.size + 1))
    set_execution(second, "static", cache=ExportCache(tmp_path))
    second(np.ones((1, 5), np.float32))
    assert [e.program for e in cache_folder.entries(tmp_path)] == ["doubler5-Nx5"]
