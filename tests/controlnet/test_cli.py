"""`paddiff generate ... --controlnet PATH --control-image IMG` on the tiny sd1 model."""

from __future__ import annotations

import numpy as np
from paddiff.cli import main
from paddiff.png_info import read_parameters
from PIL import Image

from support.pipeline_fixtures import MODELS

FIXTURES = MODELS.parent / "controlnet"


def control_png(tmp_path, name="hint.png", size=32):
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[8:24, 8:24] = 255
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def test_generate_with_two_control_nets_records_them(tmp_path, capsys):
    out = tmp_path / "out.png"
    hint = control_png(tmp_path)
    code = main(
        [
            "generate",
            "a red circle",
            "--model",
            str(MODELS / "sd1"),
            "--execution",
            "dynamic",
            "--steps",
            "2",
            "--seed",
            "3",
            "--no-progress",
            "-o",
            str(out),
            "--controlnet",
            str(FIXTURES / "cn_a"),
            "--control-image",
            str(hint),
            "--control-preprocessor",
            "canny",
            "--control-scale",
            "0.8",
            "--controlnet",
            str(FIXTURES / "cn_b"),
            "--control-image",
            str(hint),
            "--control-preprocessor",
            "none",
            "--control-scale",
            "0.5",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (32, 32)  # the control image's size
    parameters = read_parameters(out)
    first, second = parameters["ControlNet 0"], parameters["ControlNet 1"]
    assert "Module: canny" in first and "Model: cn_a [" in first and "Weight: 0.8" in first
    assert "Module: none" in second and "Model: cn_b [" in second and "Weight: 0.5" in second
    assert parameters["Control Mode"] == "Balanced"


def test_mismatched_control_options_fail_before_loading(tmp_path, capsys):
    hint = control_png(tmp_path)
    base = ["generate", "x", "--model", str(MODELS / "sd1"), "-o", str(tmp_path / "a.png")]
    code = main([*base, "--controlnet", str(FIXTURES / "cn_a")])
    assert code == 1 and "0 --control-image for 1 --controlnet" in capsys.readouterr().err
    code = main([*base, "--control-image", str(hint)])
    assert code == 1 and "--control-image given without --controlnet" in capsys.readouterr().err
    code = main(
        [
            *base,
            "--controlnet",
            str(FIXTURES / "cn_a"),
            "--control-image",
            str(hint),
            "--control-preprocessor",
            "cany",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "'cany'" in err and "canny" in err and "scribble" in err


def test_control_net_for_another_base_exits_with_the_mismatch(tmp_path, capsys):
    code = main(
        [
            "generate",
            "x",
            "--model",
            str(MODELS / "sd1"),
            "--execution",
            "dynamic",
            "-o",
            str(tmp_path / "a.png"),
            "--controlnet",
            str(FIXTURES / "sd2_like"),
            "--control-image",
            str(control_png(tmp_path)),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "cross_attention_dim 1024" in err and "cross_attention_dim 32" in err
