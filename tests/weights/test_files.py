"""Reading single weight files: every format gives the same arrays; damaged files fail clearly."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from paddiff.weights import (
    PADDLE,
    TORCH,
    StateDict,
    WeightsFormatError,
    load_state_dict,
    save_state_dict,
)

from support.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "weights"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tensors_expected.npz") as data:
        return {key: data[key] for key in data.files}


def assert_same(state, expected):
    assert sorted(state) == sorted(expected)
    for key, want in expected.items():
        got = state[key]
        assert got.dtype == want.dtype, key
        np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.mark.parametrize(
    "name",
    ["tensors.safetensors", "tensors_zip.bin", "tensors_legacy.bin", "tensors_lightning.ckpt"],
)
def test_every_torch_format_reads_the_same_arrays(name, expected):
    state = load_state_dict(FIXTURES / name)
    assert state.layout == TORCH
    assert_same(state, expected)
    assert state.info("brain").dtype == "bfloat16"  # reported as stored, read as float32


def test_dtype_casts_floating_tensors_only(expected):
    state = load_state_dict(FIXTURES / "tensors_zip.bin", dtype="float32")
    assert state["half"].dtype == np.float32
    np.testing.assert_array_equal(state["half"], expected["half"].astype(np.float32))
    assert state["ids"].dtype == np.int64


def test_paddle_pdparams_reads_as_paddle_layout(tmp_path):
    paddle = pytest.importorskip("paddle")
    linear = paddle.nn.Linear(3, 4)
    path = tmp_path / "model_state.pdparams"
    paddle.save(linear.state_dict(), str(path))
    state = load_state_dict(path)
    assert state.layout == PADDLE
    np.testing.assert_array_equal(state["weight"], linear.weight.numpy())
    assert state.shape("weight") == (3, 4)  # [in, out], Paddle's layout


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickled_numpy_state_dicts_read_back_exactly(tmp_path, protocol):
    # paddle.save's format; large arrays are located in the file and memory-mapped on lookup
    import pickle

    arrays = {
        "big": np.arange(5000, dtype=np.float32).reshape(50, 100),
        "fortran": np.asfortranarray(np.arange(3000, dtype=np.float32).reshape(60, 50)),
        "small": np.array([1.5, 2.5], dtype=np.float16),
        "ids": np.arange(4, dtype=np.int64),
    }
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(
        pickle.dumps({**arrays, "StructuredToParameterName@@": {"big": "p0"}}, protocol)
    )
    state = load_state_dict(path)
    assert sorted(state) == sorted(arrays)
    for key, want in arrays.items():
        got = state[key]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_large_pdparams_arrays_are_not_held_in_memory(tmp_path):
    import pickle

    from paddiff.lazy_pickle import scan_pickle

    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pickle.dumps({"w": np.ones((64, 64), np.float32)}, protocol=4))
    located = scan_pickle(path)["w"]
    assert not isinstance(located, np.ndarray)  # a reference into the file, read on demand
    np.testing.assert_array_equal(located.read(), np.ones((64, 64), np.float32))


def test_save_then_load_round_trips_exactly(tmp_path, expected):
    path = tmp_path / "copy.safetensors"
    save_state_dict(load_state_dict(FIXTURES / "tensors_legacy.bin"), path)
    assert_same(load_state_dict(path), expected)
    assert not list(tmp_path.glob("*.partial"))


def test_paddle_layout_safetensors_is_recognised_by_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    save_state_dict({"w": np.ones((2, 3), np.float32)}, path, metadata={"format": "np"})
    assert load_state_dict(path).layout == PADDLE


def test_lookups_read_lazily_and_name_the_file_for_unknown_keys():
    state = load_state_dict(FIXTURES / "tensors.safetensors")
    assert state["ids"] is not state["ids"]  # read afresh each time: nothing is cached
    with pytest.raises(KeyError, match="no tensor 'nope' in .*tensors.safetensors"):
        state["nope"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found: .*absent.safetensors"):
        load_state_dict(tmp_path / "absent.safetensors")


def test_unknown_suffix_is_refused(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(WeightsFormatError, match="unknown weights format '.h5'"):
        load_state_dict(path)


# -- damaged safetensors ---------------------------------------------------------------------


def write_safetensors(path, header: bytes, data: bytes = b"", length: int | None = None):
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


def good_header(**entry) -> bytes:
    tensor = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]} | entry
    return json.dumps({"w": tensor}).encode()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"\x01\x02"), "too short for a safetensors header"),
        (lambda p: write_safetensors(p, b"{}", length=10**6), "header length 1000000 does not fit"),
        (lambda p: write_safetensors(p, b"{not json"), "header is not valid JSON"),
        (lambda p: write_safetensors(p, b"[1, 2]"), "header is not a JSON object"),
        (lambda p: write_safetensors(p, good_header(), b"\0" * 4), "lies outside the file"),
        (lambda p: write_safetensors(p, good_header(dtype="F7"), b"\0" * 8), "unsupported dtype"),
        (lambda p: write_safetensors(p, good_header(shape=[3]), b"\0" * 8), "8 bytes of data"),
        (lambda p: write_safetensors(p, good_header(shape="2"), b"\0" * 8), "bad shape"),
        (lambda p: write_safetensors(p, b'{"w": {"dtype": "F32"}}'), "lacks dtype, shape"),
        (lambda p: write_safetensors(p, b'{"w": 1, "w": 2}'), "lists 'w' twice"),
    ],
)
def test_damaged_safetensors_fail_naming_the_file(tmp_path, make, message):
    path = tmp_path / "broken.safetensors"
    make(path)
    with pytest.raises(WeightsFormatError, match=message) as info:
        load_state_dict(path)
    assert str(path) in str(info.value)


def test_truncated_real_file_fails_before_reading_any_tensor(tmp_path):
    data = (FIXTURES / "tensors.safetensors").read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:-10])
    with pytest.raises(WeightsFormatError, match="cut.safetensors.*outside the file"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "name", ["tensors_legacy.bin", "tensors_zip.bin", "tensors_lightning.ckpt"]
)
def test_truncated_pickle_checkpoint_fails_clearly(tmp_path, name):
    # a cut-off zip (torch >= 1.6, e.g. an interrupted .ckpt download) has no central directory
    data = (FIXTURES / name).read_bytes()
    path = tmp_path / f"cut{Path(name).suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFormatError, match=f"cut{Path(name).suffix}"):
        dict(load_state_dict(path))


def test_state_dict_from_arrays_keeps_shapes_and_refuses_duplicates():
    state = StateDict.from_arrays({"a": np.zeros((2, 3), np.float32)})
    assert state.shape("a") == (2, 3)
    with pytest.raises(WeightsFormatError, match="appears twice"):
        state.add("a", state.info("a"), lambda: np.zeros((2, 3)))
