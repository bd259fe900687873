"""LCM-LoRA at SD 1.5 size through the command line (slow; opt-in with `pytest -m slow`).

Needs PADDIFF_LORA_FULLSIZE_DIR: an SD 1.5-size diffusers folder with random weights, made by
`/work/torchvenv/bin/python benchmarks/make_fullsize_sd15.py /tmp/lora-sd15`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from support.helpers import ROOT, run_cli

pytestmark = pytest.mark.slow


def test_lcm_lora_shaped_adapter_runs_4_steps_through_the_cli(tmp_path):
    folder = os.environ.get("PADDIFF_LORA_FULLSIZE_DIR")
    if not folder:
        pytest.skip("set PADDIFF_LORA_FULLSIZE_DIR to an SD 1.5-size model folder")
    import paddiff
    from paddiff.png_info import read_parameters

    spec = importlib.util.spec_from_file_location(
        "lora_switch", ROOT / "benchmarks" / "lora_switch.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pipe = paddiff.load_pipeline(Path(folder), execution="dynamic")
    lora = tmp_path / "lcm_like.safetensors"
    assert bench.write_lora(pipe, lora, bench.LCM_TARGETS, 64, 1) > 250
    del pipe
    out = tmp_path / "lcm.png"
    result = run_cli(
        "generate", "a cat", "--model", folder, "--lora", str(lora), "--scheduler", "lcm",
        "--steps", "4", "--guidance", "1", "--execution", "dynamic", "--width", "128",
        "--height", "128", "--seed", "1", "--no-progress", "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    parameters = read_parameters(out)
    assert parameters["Steps"] == "4" and parameters["Sampler"].startswith("LCM")
    assert parameters["Lora hashes"].startswith("lcm_like: ")
