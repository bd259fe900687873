"""paddiff's one .safetensors writer (`paddiff.weights.save_state_dict`) writes the format right."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from paddiff.weights import load_state_dict, save_state_dict
from safetensors.numpy import load_file, safe_open

ROOT = Path(__file__).resolve().parents[2]

STATE = {
    "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
    "b.half": np.array([1.5, -2.0], np.float16),
    "c.ids": np.arange(3, dtype=np.int64)[None],
    "d.flag": np.array([True, False]),
    "e.empty": np.zeros((0, 4), np.float32),
}


def test_layout_is_length_header_then_data(tmp_path):
    path = tmp_path / "w.safetensors"
    save_state_dict(STATE, path, metadata={"format": "pt", "note": "x"})
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])  # 8-byte little-endian header length
    header = json.loads(raw[8 : 8 + length])
    assert (8 + length) % 8 == 0  # data starts 8-byte aligned
    assert header.pop("__metadata__") == {"format": "pt", "note": "x"}
    codes = {"a.weight": "F32", "b.half": "F16", "c.ids": "I64", "d.flag": "BOOL", "e.empty": "F32"}
    end = 0
    for key, array in STATE.items():
        entry = header[key]
        assert entry["dtype"] == codes[key] and entry["shape"] == list(array.shape)
        begin, stop = entry["data_offsets"]
        assert begin == end and stop - begin == array.nbytes  # contiguous, in order
        data = raw[8 + length + begin : 8 + length + stop]
        assert data == np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
        end = stop
    assert len(raw) == 8 + length + end


def test_the_reference_library_reads_it_back(tmp_path):
    path = tmp_path / "w.safetensors"
    save_state_dict(STATE, path)
    got = load_file(str(path))
    assert sorted(got) == sorted(STATE)
    for key, array in STATE.items():
        np.testing.assert_array_equal(got[key], array)
        assert got[key].dtype == array.dtype
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "pt"}  # the default diffusers expects


def test_lazy_state_dicts_save_too(tmp_path):
    first, second = tmp_path / "1.safetensors", tmp_path / "2.safetensors"
    save_state_dict(STATE, first)
    save_state_dict(load_state_dict(first), second)
    assert first.read_bytes() == second.read_bytes()


def test_metadata_must_be_strings(tmp_path):
    with pytest.raises(ValueError, match="str to str"):
        save_state_dict(STATE, tmp_path / "w.safetensors", metadata={"step": 3})
    assert not list(tmp_path.iterdir())


def test_no_other_safetensors_writer_in_the_library():
    # Fixture generators under tests/fixtures run in a torch reference environment and use the
    # reference library on purpose (the tests check that paddiff reads what others write).
    sources = [
        p
        for top in ("core", "plugins", "benchmarks", "hub_module", "examples")
        for p in (ROOT / top).rglob("*.py")
    ]
    writers = [str(p) for p in sources if "save_file" in p.read_text(encoding="utf-8")]
    assert writers == []
