"""Serving: a request names control nets from the operator's folder and sends base64 control
images; `hub serving` and `hub run` generate with exactly those nets."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from paddiff.serving import RequestError, ServingLimits, parse_request
from PIL import Image

from support.fixture_configs import FIXTURES

CONTROL = FIXTURES / "controlnet"
LIMITS = ServingLimits(controlnet_dirs=(str(CONTROL),))


def hint_base64(size=32) -> str:
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[8:24, 8:24] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_names_resolve_in_the_operator_folder():
    request = parse_request(
        {
            "prompt": "x",
            "controlnets": [
                {"name": "cn_a", "image": hint_base64(), "scale": 0.5, "preprocessor": "canny"},
                {"name": "cn_a_original", "image": hint_base64(), "end": 0.5},
            ],
            "guess_mode": True,
        },
        LIMITS,
    )
    first, second = request.arguments["controls"]
    assert first["path"] == CONTROL / "cn_a" and first["scale"] == 0.5
    assert first["preprocessor"] == "canny" and first["image"].size == (32, 32)
    assert second["path"] == CONTROL / "cn_a_original.safetensors" and second["end"] == 0.5
    assert request.arguments["guess_mode"] is True


@pytest.mark.parametrize(
    "item, message",
    [
        ({"name": "../cn_a", "image": "x"}, "give a name from the folder, not a path"),
        ({"name": "missing", "image": "x"}, "no control net named 'missing'; available: cn_a"),
        ({"name": "cn_a"}, "'image' (base64) is required"),
        ({"name": "cn_a", "image": "@@@"}, "base64"),
        ({"name": "cn_a", "image": None, "weight": 1}, "unknown field(s) weight"),
        ({"name": "cn_a", "image": "IMG", "scale": "big"}, "scale must be a number"),
        ({"name": "cn_a", "image": "IMG", "preprocessor": "cany"}, "known: canny"),
    ],
)
def test_bad_control_entries_are_refused_without_server_paths(item, message):
    item = {k: (hint_base64() if v == "IMG" else v) for k, v in item.items()}
    with pytest.raises(RequestError) as error:
        parse_request({"prompt": "x", "controlnets": [item]}, LIMITS)
    assert message in str(error.value)
    assert str(CONTROL) not in str(error.value)


def test_without_a_folder_or_over_the_limit_control_nets_are_refused():
    with pytest.raises(RequestError, match="no control-net folder is configured"):
        parse_request(
            {"prompt": "x", "controlnets": [{"name": "cn_a", "image": hint_base64()}]},
            ServingLimits(),
        )
    limits = ServingLimits.from_env(
        {"PADDIFF_CONTROLNET_DIR": str(CONTROL), "PADDIFF_MAX_CONTROLNETS": "1"}
    )
    two = [{"name": "cn_a", "image": hint_base64()}] * 2
    with pytest.raises(RequestError, match="2 control nets asked for; this server allows 1"):
        parse_request({"prompt": "x", "controlnets": two}, limits)


SERVE_WITH_CONTROL = """
    import importlib, json, sys
    sys.path.insert(0, sys.argv[1])
    module = importlib.import_module("paddiff.module")
    sys.path.pop(0)
    hub = module.Paddiff(model=sys.argv[2])
    base = {"prompt": "a red circle", "steps": 2, "seed": 1}
    control = [{"name": "cn_a", "image": sys.argv[3], "scale": 0.9}]
    out = {}
    reply = hub.serve(**base, controlnets=control)
    out["with"] = reply["images"][0]["settings"]
    out["with_image"] = reply["images"][0]["image"]
    reply = hub.serve(**base)
    out["without"] = reply["images"][0]["settings"]
    out["without_image"] = reply["images"][0]["image"]
    out["again_image"] = hub.serve(**base, controlnets=control)["images"][0]["image"]
    paths = hub.run_cmd(["--prompt", "a red circle", "--steps", "2", "--seed", "1",
        "--output_dir", sys.argv[4], "--controlnet", "cn_a", "--control_image", sys.argv[5],
        "--control_scale", "0.9"])
    out["run_paths"] = paths
    print(json.dumps(out))
"""


def test_hub_module_serves_and_runs_with_the_requested_control_net_only(tmp_path):
    modules = tmp_path / "modules"
    shutil.copytree(FIXTURES.parents[1] / "hub_module" / "paddiff", modules / "paddiff")
    hint = tmp_path / "hint.png"
    hint.write_bytes(base64.b64decode(hint_base64()))
    env = dict(
        os.environ,
        PADDIFF_CONTROLNET_DIR=str(CONTROL),
        HUB_HOME=str(tmp_path / "hub"),
        PADDIFF_EXECUTION="dynamic",
    )
    args = [
        str(modules),
        str(FIXTURES / "sd" / "sd1"),
        hint_base64(),
        str(tmp_path / "run"),
        str(hint),
    ]
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SERVE_WITH_CONTROL), *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "Model: cn_a [" in out["with"]["controlnet_0"]
    assert "controlnet_0" not in out["without"]
    assert out["with_image"] != out["without_image"]
    assert out["again_image"] == out["with_image"]
    from paddiff.png_info import read_parameters

    (path,) = out["run_paths"]
    assert "Weight: 0.9" in read_parameters(path)["ControlNet 0"]
