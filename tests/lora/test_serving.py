"""Serving: a request names LoRAs and embeddings from the operator's folders, never a path."""

from __future__ import annotations

import pytest
from paddiff.serving import RequestError, ServingLimits, parse_request

from support.fixture_configs import FIXTURES

LORA = FIXTURES / "lora"
LIMITS = ServingLimits(lora_dirs=(str(LORA),), embedding_dirs=(str(LORA),))


def test_names_resolve_in_the_operator_folders_and_tags_leave_the_prompt():
    request = parse_request(
        {
            "prompt": "a cat <lora:b_peft:0.4>",
            "loras": ["a_kohya:0.7", {"name": "a_peft", "weight": 0.5}],
            "embeddings": ["ti_a1111"],
        },
        LIMITS,
    )
    args = request.arguments
    assert args["prompt"] == "a cat"
    assert args["loras"] == [
        (LORA / "a_kohya.safetensors", 0.7),
        (LORA / "a_peft.safetensors", 0.5),
        (LORA / "b_peft.safetensors", 0.4),
    ]
    assert args["embeddings"] == [LORA / "ti_a1111.safetensors"]


def test_every_refused_name_is_reported_without_server_paths():
    with pytest.raises(RequestError) as error:
        parse_request(
            {
                "prompt": "a cat <lora:../../etc/passwd:1>",
                "loras": ["/abs/file.safetensors", "missing"],
                "embeddings": ["nope"],
            },
            LIMITS,
        )
    message = str(error.value)
    assert "'/abs/file.safetensors': give a name from the folder, not a path" in message
    assert "'../../etc/passwd': give a name" in message
    assert "no LoRA named 'missing'; available: a_kohya" in message
    assert "no embedding named 'nope'" in message
    assert str(LORA) not in message


def test_without_configured_folders_names_are_refused():
    with pytest.raises(RequestError, match="no LoRA folder is configured"):
        parse_request({"prompt": "x", "loras": ["a_peft"]}, ServingLimits())
    assert "loras" not in parse_request({"prompt": "x"}, ServingLimits()).arguments


def test_folders_and_limits_from_the_environment():
    limits = ServingLimits.from_env({"PADDIFF_LORA_DIR": "/a:/b", "PADDIFF_MAX_LORAS": "1"})
    assert limits.lora_dirs == ("/a", "/b") and limits.max_loras == 1
    with pytest.raises(RequestError, match="2 LoRAs asked for; this server allows 1"):
        parse_request({"prompt": "x", "loras": ["a", "b"]}, limits)


def test_use_switches_adapters_per_request():
    from support.pipeline_fixtures import fixture_pipeline

    pipe = fixture_pipeline("sd1")
    pipe.lora.use([(LORA / "a_peft.safetensors", 0.7), (LORA / "b_peft.safetensors", 0.4)])
    assert pipe.lora.active == {"a_peft": 0.7, "b_peft": 0.4}
    pipe.lora.use([(LORA / "b_peft.safetensors", 1.0)])
    assert pipe.lora.active == {"b_peft": 1.0} and set(pipe.lora.adapters) == {"a_peft", "b_peft"}
    pipe.lora.use([])
    assert pipe.lora.active == {}


SERVE_WITH_LORAS = """
    import importlib, json, os, sys
    sys.path.insert(0, sys.argv[1])
    module = importlib.import_module("paddiff.module")
    sys.path.pop(0)
    hub = module.Paddiff(model=sys.argv[2])
    base = {"prompt": "a cat", "steps": 2, "seed": 1}
    out = {}
    reply = hub.serve(**base, loras=["a_kohya:0.7"], embeddings=["ti_a1111"])
    out["with"] = reply["images"][0]["settings"]
    out["with_image"] = reply["images"][0]["image"]
    reply = hub.serve(**base)
    out["without"] = reply["images"][0]["settings"]
    out["without_image"] = reply["images"][0]["image"]
    tagged = dict(base, prompt="a cat <lora:a_kohya:0.7>", embeddings=["ti_a1111"])
    out["again_image"] = hub.serve(**tagged)["images"][0]["image"]
    try:
        hub.serve(**base, loras=["../a_kohya"])
    except ValueError as exc:
        out["refused"] = str(exc)
    print(json.dumps(out))
"""


def test_hub_module_serves_with_the_requested_loras_only(tmp_path):
    """Through the module's serve(): the request's LoRA is enabled for it alone."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    import textwrap

    modules = tmp_path / "modules"
    shutil.copytree(FIXTURES.parents[1] / "hub_module" / "paddiff", modules / "paddiff")
    env = dict(
        os.environ,
        PADDIFF_LORA_DIR=str(LORA),
        PADDIFF_EMBEDDING_DIR=str(LORA),
        HUB_HOME=str(tmp_path / "hub"),
        PADDIFF_EXECUTION="dynamic",
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SERVE_WITH_LORAS), str(modules), str(FIXTURES / "sd" / "sd1")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["with"]["lora_hashes"].startswith("a_kohya: ")
    assert out["with"]["ti_hashes"].startswith("ti_a1111: ")
    assert "lora_hashes" not in out["without"]
    assert out["with_image"] != out["without_image"]
    assert out["again_image"] == out["with_image"]  # the tag gives what the field gave
    assert "give a name from the folder, not a path" in out["refused"]
