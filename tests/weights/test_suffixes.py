"""One list of weight-file suffixes: the loader and the model hash agree on what a weight file is."""

from __future__ import annotations

import hashlib

import pytest
from paddiff import loader, model_hash, weights
from paddiff.weights import WEIGHT_SUFFIXES, WeightsFormatError


def test_the_lists_are_one():
    assert loader.CHECKPOINT_SUFFIXES is WEIGHT_SUFFIXES
    assert model_hash.WEIGHT_SUFFIXES is WEIGHT_SUFFIXES
    assert set(weights.PICKLE_SUFFIXES) | {".safetensors"} == set(WEIGHT_SUFFIXES)


@pytest.mark.parametrize("suffix", WEIGHT_SUFFIXES)
def test_every_suffix_is_read_as_weights_and_hashed(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not weights")
    # The loader takes the file as a checkpoint and fails reading it, not on its name.
    with pytest.raises(WeightsFormatError) as caught:
        loader.load_components(path)
    assert "unknown weights format" not in str(caught.value)
    (tmp_path / "notes.txt").write_text("one")
    before = model_hash.model_hash(tmp_path)
    (tmp_path / "notes.txt").write_text("two")  # not a weight file: the hash ignores it
    assert model_hash.model_hash(tmp_path) == before
    path.write_bytes(b"other weights")
    assert model_hash.model_hash(tmp_path) != before


def test_other_suffixes_are_neither(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"nor a checkpoint file \(\.safetensors, \.bin"):
        loader.load_components(path)
    with pytest.raises(WeightsFormatError, match="expected one of .safetensors, .bin"):
        weights.load_state_dict(path)
    assert model_hash.model_hash(tmp_path) == hashlib.sha256().hexdigest()[:10]  # no weight files
