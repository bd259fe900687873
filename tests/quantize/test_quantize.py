"""`paddiff quantize` on the tiny SD 1.x fixture model: the quantized folder loads through
load_pipeline like any model, its INT8 UNet follows the float one, bad requests fail clearly."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from support.helpers import run_cli
from support.pipeline_fixtures import MODELS

pytest.importorskip("openvino")
pytest.importorskip("nncf")

SOURCE = MODELS / "sd1"
SIZE = 64  # pixels (the fixture's VAE downsamples 2x: 32x32 latents)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from paddiff.quantize.tool import quantize_model

    out = tmp_path_factory.mktemp("int8") / "sd1-int8"
    report = quantize_model(
        SOURCE, out, images=2, steps=4, samples=8, height=SIZE, width=SIZE, log=lambda _: None
    )
    return out, report


@pytest.fixture(scope="module")
def pipes(quantized):
    """(float pipeline in the dynamic graph, the quantized folder's pipeline)."""
    import paddiff

    return paddiff.load_pipeline(SOURCE, execution="dynamic"), paddiff.load_pipeline(quantized[0])


def test_folder_loads_with_the_int8_unet_and_keeps_the_other_components(quantized, pipes):
    from paddiff.plugins.denoisers.openvino_int8 import OpenVINOInt8UNet

    out, report = quantized
    index = json.loads((out / "model_index.json").read_text())
    assert index["unet"] == ["paddiff", "OpenVINOInt8UNet"]
    for part in ("text_encoder", "vae", "tokenizer", "scheduler"):
        assert (out / part).is_dir()
    assert isinstance(pipes[1].denoiser, OpenVINOInt8UNet)
    assert report["int8_model_bytes"] < 0.5 * report["float32_weight_bytes"]
    assert report["calibration"]["prompts_from"] == "the built-in list"  # the fixture has none
    assert {"conv_in", "conv_out"} <= set(report["kept_in_float"])
    assert report["layer_sensitivity"] and all(v >= 0 for v in report["layer_sensitivity"].values())


def test_int8_unet_follows_the_float_unet_on_recorded_inputs(pipes):
    from paddiff.quantize.calibration import record_unet_inputs

    float_pipe, int8_pipe = pipes
    calls = record_unet_inputs(
        float_pipe, ["a blue square", "一个蓝色的正方形"], steps=5, height=SIZE, width=SIZE, seed=9
    )
    for latents, t, cond in calls:
        want = float_pipe.denoiser(latents, t, cond)
        got = int8_pipe.denoiser(latents, t, cond)
        cosine = float((want * got).sum() / (np.linalg.norm(want) * np.linalg.norm(got)))
        assert cosine > 0.97, cosine
    # a batch other than the model's (no guidance: batch 1) runs in padded pieces
    latents, t, cond = calls[0]
    one = int8_pipe.denoiser(latents[:1], t[:1], cond[:1])
    np.testing.assert_allclose(one, int8_pipe.denoiser(latents, t, cond)[:1], atol=1e-5)


def test_generation_from_the_quantized_folder_is_close_to_float(pipes):
    settings = dict(steps=8, height=SIZE, width=SIZE, seed=3, progress=False)
    want, got = (
        np.asarray(pipe.text_to_image("a red circle", **settings).images[0], np.float64)
        for pipe in pipes
    )
    psnr = 10 * np.log10(255**2 / np.mean((want - got) ** 2))
    assert psnr > 20, psnr


def test_other_latent_sizes_are_refused_with_the_fix(pipes):
    pipe = pipes[1]
    with pytest.raises(ValueError, match="quantize again with --height/--width"):
        pipe.text_to_image("a red circle", steps=2, height=2 * SIZE, width=SIZE, progress=False)


def test_an_already_quantized_folder_is_refused(quantized, tmp_path):
    out, _ = quantized
    result = run_cli("quantize", str(out), str(tmp_path / "again"))
    assert result.returncode == 1
    assert "already quantized" in result.stderr
    assert not (tmp_path / "again").exists()


def test_a_model_without_unet_is_refused(tmp_path):
    model = tmp_path / "no-unet"
    shutil.copytree(SOURCE, model, ignore=shutil.ignore_patterns("unet"))
    index = json.loads((model / "model_index.json").read_text())
    index.pop("unet")
    (model / "model_index.json").write_text(json.dumps(index))
    result = run_cli("quantize", str(model), str(tmp_path / "out"))
    assert result.returncode == 1
    assert "has no UNet" in result.stderr


def test_an_unknown_scheme_is_refused_before_anything_is_loaded(tmp_path):
    result = run_cli("quantize", str(SOURCE), str(tmp_path / "out"), "--scheme", "int4")
    assert result.returncode == 1
    assert "unknown quantization scheme 'int4'" in result.stderr and "int8-mixed" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_cpu_without_vnni_gets_a_warning_and_still_runs(quantized, monkeypatch):
    from paddiff.plugins.denoisers import openvino_int8

    out, _ = quantized
    monkeypatch.setattr(openvino_int8, "cpu_has_vnni", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unet = openvino_int8.OpenVINOInt8UNet.from_pretrained(out / "unet")
    assert any("no VNNI" in str(w.message) for w in caught)
    latents = np.zeros((2, 4, *unet.latent_size), np.float32)
    cond = np.zeros((2, unet.tokens, unet.config["cross_attention_dim"]), np.float32)
    assert unet(latents, 500.0, cond).shape == latents.shape


def test_the_hub_module_runs_a_quantized_folder(quantized, tmp_path):
    import os
    import subprocess
    import sys

    from support.helpers import ROOT
    from support.processes import hub_command

    out, _ = quantized
    env = dict(os.environ, HUB_HOME=str(tmp_path))
    env.pop("PADDIFF_MODEL", None)
    installed = subprocess.run(
        [*hub_command(), "install", str(ROOT / "hub_module" / "paddiff")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = (
        "import sys, paddlehub as hub\n"
        "module = hub.Module(name='paddiff', model=sys.argv[1])\n"
        f"images = module.text_to_image('a red circle', steps=3, seed=1, height={SIZE}, "
        f"width={SIZE})\n"
        "print(type(module.pipeline.denoiser).__name__, images[0]['image'].size)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"OpenVINOInt8UNet ({SIZE}, {SIZE})" in result.stdout


def test_calibrating_the_embedded_model_does_not_warn_about_the_built_in_prompts():
    """The built-in calibration list has words the embedded model never learnt ("猫"); the user
    did not write them, so calibration must not warn about them (generation still does)."""
    import paddiff
    from paddiff.prompt_checks import PromptWordsWarning
    from paddiff.quantize.calibration import record_unet_inputs

    pipe = paddiff.load_pipeline()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calls = record_unet_inputs(pipe, ["窗台上睡觉的猫"], steps=1, height=64, width=64)
    assert calls and not [w for w in caught if issubclass(w.category, PromptWordsWarning)]
    with pytest.warns(PromptWordsWarning, match="猫"):
        pipe.text_to_image("窗台上睡觉的猫", steps=1, progress=False)


def test_exporting_for_quantization_keeps_paddle_and_paddle2onnx_lines_quiet(tmp_path, capfd):
    import paddiff
    from paddiff.quantize import export

    unet = paddiff.load_pipeline(SOURCE, execution="dynamic").denoiser
    specs = export.unet_specs(unet.config, 2, (SIZE // 2, SIZE // 2), 77)
    capfd.readouterr()
    export.export_openvino(unet.net, specs, tmp_path)
    out, err = capfd.readouterr()
    assert "not support input out tensor" not in err and "eager_utils.cc" not in err, err
    assert "Paddle2ONNX" not in out and "ONNX model saved" not in out, out


def test_each_scheme_keeps_its_own_layers_in_float():
    from paddiff.quantize.int8 import kept_in_float

    block = "up_blocks.1.attentions.0.transformer_blocks.0"
    layers = {
        "op1": "conv_in",
        "op2": "up_blocks.1.resnets.0.time_emb_proj",
        "op3": f"{block}.ff.net.2",
        "op4": f"{block}.ff.net.0.proj",
        "op5": f"{block}.attn1.to_q",
        "op6": "conv_out",
    }
    mixed = ["conv_in", "conv_out", "up_blocks.1.resnets.0.time_emb_proj"]
    assert kept_in_float(layers, "int8") == []
    assert kept_in_float(layers, "int8-mixed") == mixed
    assert kept_in_float(layers, "int8-mixed-ffn") == sorted([*mixed, f"{block}.ff.net.2"])
