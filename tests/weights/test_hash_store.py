"""The model hash is kept on disk between runs (hashing SD 1.5's weights takes seconds), keyed by
the files' sizes and modification times, and never wrong: a changed file is hashed again."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from paddiff import model_hash


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDIFF_CACHE_DIR", str(tmp_path / "cache"))
    model_hash._hash.cache_clear()  # a new process: only the disk remembers
    yield model_hash.hash_store()
    model_hash._hash.cache_clear()


def new_process():
    model_hash._hash.cache_clear()


def test_a_later_run_reads_the_stored_hash_instead_of_the_weights(store, tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    expected = hashlib.sha256(b"weights").hexdigest()[:10]
    assert model_hash.model_hash(checkpoint) == expected
    assert store.is_file() and len(json.loads(store.read_text())) == 1
    new_process()
    monkeypatch.setattr(model_hash, "_compute", lambda *a: pytest.fail("weights read again"))
    assert model_hash.model_hash(checkpoint) == expected


def test_a_changed_file_is_hashed_again(store, tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    model_hash.model_hash(checkpoint)
    checkpoint.write_bytes(b"other!!")  # same size; the modification time moves on
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    new_process()
    assert model_hash.model_hash(checkpoint) == hashlib.sha256(b"other!!").hexdigest()[:10]


def test_a_damaged_or_unwritable_store_only_costs_a_rehash(store, tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    assert model_hash.model_hash(checkpoint) == hashlib.sha256(b"weights").hexdigest()[:10]
    assert json.loads(store.read_text())  # replaced by a good store
    new_process()
    store.unlink()
    store.mkdir()  # a folder where the file should be: nothing can be written
    assert model_hash.model_hash(checkpoint) == hashlib.sha256(b"weights").hexdigest()[:10]
