"""SDXL single files in Stability's layout (conditioner.embedders.*, model.diffusion_model.*,
first_stage_model.*; fused OpenCLIP q/k/v) load equal to the diffusers folder they came from,
and the configs inferred from their shapes describe the same networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.convert.original_sdxl import convert_sdxl_checkpoint
from paddiff.weights import load_state_dict, save_state_dict

from support.sdxl_single_file import to_sgm

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"
# config entries the shapes determine (heads and the micro-conditioning width are SDXL 1.0's
# convention, which the tiny models do not follow)
UNET_KEYS = (
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
    "cross_attention_dim",
    "in_channels",
    "use_linear_projection",
    "addition_embed_type",
    "projection_class_embeddings_input_dim",
)
TEXT_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "hidden_act")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sgm")
    out = {}
    for model in ("base", "refiner"):
        out[model] = folder / f"sdxl_{model}.safetensors"
        save_state_dict(to_sgm(FIXTURES / model), out[model])
    return out


@pytest.mark.parametrize("model", ["base", "refiner"])
def test_inferred_configs_describe_the_folder_networks(files, model):
    parts = convert_sdxl_checkpoint(load_state_dict(files[model], dtype="float32"))
    unet = json.loads((FIXTURES / model / "unet" / "config.json").read_text())
    for key in UNET_KEYS:
        assert list(np.atleast_1d(parts["denoiser"].config[key])) == list(
            np.atleast_1d(unet[key])
        ), key
    depth = np.broadcast_to(unet["transformer_layers_per_block"], len(unet["block_out_channels"]))
    attention = [t.startswith("CrossAttn") for t in unet["down_block_types"]]
    inferred = parts["denoiser"].config["transformer_layers_per_block"]
    assert [d for d, a in zip(inferred, attention, strict=True) if a] == [
        d for d, a in zip(depth, attention, strict=True) if a
    ]
    names = ["text_encoder_2"] + (["text_encoder"] if model == "base" else [])
    assert sorted(n for n in parts if n.startswith("text")) == sorted(names)
    for name in names:
        folder = json.loads((FIXTURES / model / name / "config.json").read_text())
        for key in TEXT_KEYS:
            assert parts[name].config[key] == folder[key], (name, key)
    assert parts["text_encoder_2"].config["projection_dim"] == 32
    assert parts["vae"].config["scaling_factor"] == pytest.approx(0.13025)


def test_single_file_equals_folder(files):
    """Same configs (config=folder): every component and a whole generation are equal."""
    folder = paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")
    single = paddiff.load_pipeline(files["base"], config=FIXTURES / "base", execution="dynamic")
    prompts = ["a red circle on a white background", ""]
    for a, b in zip(
        folder.text_encoder.encode_with_pooled(prompts),
        single.text_encoder.encode_with_pooled(prompts),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    settings = dict(steps=3, width=32, height=32, seed=5, guidance_scale=5.0, progress=False)
    a = folder.text_to_image("a blue square", negative_prompt="blurry", **settings).images[0]
    b = single.text_to_image("a blue square", negative_prompt="blurry", **settings).images[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_refiner_single_file_equals_folder(files):
    folder = paddiff.load_pipeline(FIXTURES / "refiner", execution="dynamic")
    single = paddiff.load_pipeline(
        files["refiner"], config=FIXTURES / "refiner", execution="dynamic"
    )
    assert single.text_encoder.first is None and single._aesthetic()
    ref = np.load(FIXTURES / "components.npz")
    added = {"text_embeds": ref["refiner_pooled"], "time_ids": ref["refiner_time_ids"]}
    args = ref["refiner_sample"], ref["refiner_timesteps"], ref["refiner_context"], added
    np.testing.assert_array_equal(folder.denoiser(*args), single.denoiser(*args))
