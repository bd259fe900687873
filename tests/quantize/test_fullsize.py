"""`paddiff quantize` + `paddiff generate --model OUT_DIR` at SD 1.5 size (slow; opt-in with
`pytest -m slow`).

Needs PADDIFF_INT8_FULLSIZE_DIR: an SD 1.5-size diffusers folder with random weights, made by
`/work/torchvenv/bin/python benchmarks/make_fullsize_sd15.py /tmp/int8-sd15`. Run it alone
(`flock /work/bigmem.lock`): it holds the float UNet, its ONNX export and NNCF's copy at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from support.helpers import run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("openvino")


def test_sd15_size_quantize_then_generate(tmp_path):
    folder = os.environ.get("PADDIFF_INT8_FULLSIZE_DIR")
    if not folder:
        pytest.skip("set PADDIFF_INT8_FULLSIZE_DIR to an SD 1.5-size model folder")
    out = tmp_path / "sd15-int8"
    # the default calibration (16 prompts x 10 steps, 32 calls): the ranges must cover the
    # latents of a whole 20-step trajectory, which grow far beyond a few short runs' ones
    result = run_cli(
        "quantize", folder, str(out), "--height", "256", "--width", "256", timeout=3600
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "unet" / "quantization.json").read_text())
    assert report["int8_model_bytes"] <= 0.4 * report["float32_weight_bytes"]

    import paddiff
    from paddiff.quantize.calibration import record_unet_inputs

    float_pipe = paddiff.load_pipeline(Path(folder))
    calls = record_unet_inputs(float_pipe, ["a cat"], steps=20, height=256, width=256, seed=5)
    float_unet = float_pipe.denoiser
    del float_pipe
    int8_unet = paddiff.load_pipeline(out).denoiser
    for latents, t, cond in calls:  # each step of a 20-step float trajectory
        want, got = float_unet(latents, t, cond), int8_unet(latents, t, cond)
        cosine = float((want * got).sum() / (np.linalg.norm(want) * np.linalg.norm(got)))
        assert cosine >= 0.99, (int(t[0]), cosine)

    image = tmp_path / "cat.png"
    result = run_cli(
        "generate", "a cat", "--model", str(out), "--steps", "4", "--width", "256",
        "--height", "256", "--seed", "1", "--no-progress", "-o", str(image), timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert image.stat().st_size > 0
