"""Loading SDXL folders as diffusers writes them: model_index.json of
StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline, text_encoder_2 + tokenizer_2,
sharded `*.safetensors.index.json` weights and fp16 variants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.weights import find_component_weights, load_component_weights, save_state_dict

from support.weights_formats import as_sharded

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"
PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def reference():
    return np.load(FIXTURES / "components.npz")


def unet_output(pipe, ref):
    added = {"text_embeds": ref["base_pooled"], "time_ids": ref["base_time_ids"]}
    return pipe.denoiser(ref["base_sample"], ref["base_timesteps"], ref["base_context"], added)


def test_base_and_refiner_folders_load_as_sdxl_pipelines():
    from paddiff.sdxl.pipeline import SDXLPipeline

    base = paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")
    refiner = paddiff.load_pipeline(FIXTURES / "refiner", execution="dynamic")
    assert isinstance(base, SDXLPipeline) and isinstance(refiner, SDXLPipeline)
    assert base.text_encoder.hidden_size == 64 and refiner.text_encoder.hidden_size == 32
    assert refiner.text_encoder.first is None  # the refiner has only text_encoder_2
    assert base.text_encoder.force_zeros_for_empty_prompt
    assert not refiner.text_encoder.force_zeros_for_empty_prompt
    assert refiner._aesthetic() and not base._aesthetic()
    assert base.vae.scaling_factor == pytest.approx(0.13025)


def test_sharded_weights_and_fp16_variant(tmp_path):
    model = shutil.copytree(FIXTURES / "base", tmp_path / "base")
    ref = reference()
    for part in PARTS:  # every component as an fp16 variant next to the fp32 files
        folder = model / part
        (file,) = find_component_weights(folder)
        state = load_component_weights(folder, dtype="float16")
        save_state_dict(state, folder / file.name.replace(".safetensors", ".fp16.safetensors"))
    unet = model / "unet"
    (file,) = find_component_weights(unet)
    state = dict(load_component_weights(unet, dtype=None))
    file.unlink()
    as_sharded(state, unet, file.name.split(".")[0])  # the fp32 UNet in two shards
    assert (unet / "diffusion_pytorch_model.safetensors.index.json").is_file()

    sharded = paddiff.load_pipeline(model, execution="dynamic")
    np.testing.assert_allclose(unet_output(sharded, ref), ref["base_output"], atol=1e-4)

    half = paddiff.load_pipeline(model, variant="fp16", execution="dynamic")
    weight = half.denoiser.net.add_embedding.linear_1.weight.numpy()
    original = state["add_embedding.linear_1.weight"].T  # torch layout -> Paddle's
    np.testing.assert_array_equal(weight, original.astype(np.float16).astype(np.float32))
    assert np.abs(unet_output(half, ref) - ref["base_output"]).max() < 2e-2


def test_a_folder_without_text_encoder_2_is_refused_by_name(tmp_path):
    model = shutil.copytree(FIXTURES / "refiner", tmp_path / "refiner")
    index = json.loads((model / "model_index.json").read_text())
    index["text_encoder_2"] = [None, None]
    (model / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="names no class for 'text_encoder_2'"):
        paddiff.load_pipeline(model)


def test_exported_unet_and_encoders_match_diffusers(tmp_path):
    """The UNet's added inputs and the second encoder's two outputs survive export."""
    ref = reference()
    from paddiff.execution import set_execution

    pipe = paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")
    set_execution([pipe.denoiser, pipe.text_encoder.second], "static", tmp_path)
    np.testing.assert_allclose(unet_output(pipe, ref), ref["base_output"], atol=1e-4)
    hidden, pooled = pipe.text_encoder.second.runner(ref["ids2"])
    np.testing.assert_allclose(hidden, ref["te2_penultimate"], atol=1e-4)
    np.testing.assert_allclose(pooled, ref["te2_pooled"], atol=1e-4)
    assert pipe.denoiser.runner.mode == "static"


def test_a_scheduler_swap_keeps_the_sdxl_pipeline():
    from paddiff.sdxl.pipeline import SDXLPipeline

    pipe = paddiff.load_pipeline(FIXTURES / "base", scheduler="dpm++2m-karras", execution="dynamic")
    assert isinstance(pipe, SDXLPipeline)
    result = pipe.text_to_image("a cat", steps=2, width=32, height=32, seed=1, progress=False)
    assert result.settings[0]["scheduler"] == "DPMSolverMultistepScheduler"
