"""Finding a component's weights in a folder: names, preference, variants, shards, layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from paddiff.weights import (
    PADDLE,
    TORCH,
    WeightsFormatError,
    find_component_weights,
    load_component_weights,
    save_state_dict,
)

from support.weights_formats import as_sharded, write_torch_zip

STATE = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}


def test_safetensors_is_preferred_over_bin_as_in_diffusers(tmp_path):
    write_torch_zip(
        {"a.weight": np.zeros((2, 3), np.float32)}, tmp_path / "diffusion_pytorch_model.bin"
    )
    save_state_dict(STATE, tmp_path / "diffusion_pytorch_model.safetensors")
    assert find_component_weights(tmp_path) == [tmp_path / "diffusion_pytorch_model.safetensors"]
    np.testing.assert_array_equal(load_component_weights(tmp_path)["a.weight"], STATE["a.weight"])


@pytest.mark.parametrize(
    "name, layout",
    [
        ("model.safetensors", TORCH),
        ("pytorch_model.bin", TORCH),
        ("diffusion_paddle_model.safetensors", PADDLE),
    ],
)
def test_transformers_and_ppdiffusers_names_are_found(tmp_path, name, layout):
    if name.endswith(".bin"):
        write_torch_zip(STATE, tmp_path / name)
    else:
        save_state_dict(STATE, tmp_path / name)
    state = load_component_weights(tmp_path)
    assert state.layout == layout
    assert sorted(state) == sorted(STATE)


def test_variant_files_are_chosen_only_when_asked_for(tmp_path):
    save_state_dict(STATE, tmp_path / "diffusion_pytorch_model.safetensors")
    half = {k: v.astype(np.float16) for k, v in STATE.items()}
    save_state_dict(half, tmp_path / "diffusion_pytorch_model.fp16.safetensors")
    assert load_component_weights(tmp_path, "fp16", dtype=None)["b"].dtype == np.float16
    assert load_component_weights(tmp_path, "fp16")["b"].dtype == np.float32  # cast on read
    assert load_component_weights(tmp_path, dtype=None)["b"].dtype == np.float32


def test_only_a_variant_present_suggests_passing_it(tmp_path):
    save_state_dict(STATE, tmp_path / "diffusion_pytorch_model.fp16.safetensors")
    with pytest.raises(FileNotFoundError, match="Pass variant= \\(e.g. 'fp16'\\)"):
        load_component_weights(tmp_path)


def test_shards_are_merged_and_checked_against_their_index(tmp_path):
    as_sharded(STATE, tmp_path, "diffusion_pytorch_model")
    assert len(find_component_weights(tmp_path)) == 2
    state = load_component_weights(tmp_path)
    for key, value in STATE.items():
        np.testing.assert_array_equal(state[key], value)
    index = tmp_path / "diffusion_pytorch_model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["c"] = data["weight_map"]["b"]
    index.write_text(json.dumps(data))
    with pytest.raises(WeightsFormatError, match="does not match its shards.*: c"):
        load_component_weights(tmp_path)


def test_missing_shard_is_named(tmp_path):
    as_sharded(STATE, tmp_path, "model")
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="names shards that do not exist: .*00002-of-00002"):
        load_component_weights(tmp_path)


def test_sharded_variant_index_name_follows_diffusers(tmp_path):
    as_sharded(STATE, tmp_path, "diffusion_pytorch_model")
    for f in tmp_path.iterdir():
        f.rename(
            tmp_path / f.name.replace(".safetensors.index.json", ".safetensors.index.fp16.json")
        )
    assert len(find_component_weights(tmp_path, "fp16")) == 2


def test_empty_or_missing_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights in .*the folder holds: nothing"):
        load_component_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="component folder not found"):
        load_component_weights(tmp_path / "absent")


def test_safetensors_written_here_are_read_by_the_safetensors_library(tmp_path):
    from safetensors.numpy import load_file

    save_state_dict(STATE, tmp_path / "x.safetensors")
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert sorted(loaded) == sorted(STATE)
    for key, value in STATE.items():
        np.testing.assert_array_equal(loaded[key], value)
