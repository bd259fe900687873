"""`paddiff webui`: the page and its JSON API served on their own (no PaddleHub, no browser)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from support.processes import free_port

TIMEOUT = 120


def write_tiny_lora(folder):
    """A PEFT-format LoRA on two of the embedded UNet's attention projections (rank 2), saved as
    the operator would drop it into their LoRA folder."""
    import numpy as np
    from paddiff.weights import save_state_dict

    rng = np.random.default_rng(0)
    tensors = {}
    for block in ("down_blocks.1", "up_blocks.1"):
        module = f"unet.{block}.attentions.0.transformer_blocks.0.attn1.to_q"
        tensors[f"{module}.lora_A.weight"] = rng.normal(0, 0.5, (2, 64)).astype(np.float32)
        tensors[f"{module}.lora_B.weight"] = rng.normal(0, 0.5, (64, 2)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_state_dict(tensors, folder / "tiny.safetensors")


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    port = free_port()
    loras = tmp_path_factory.mktemp("loras")
    write_tiny_lora(loras)
    env = dict(
        os.environ,
        PADDIFF_MAX_STEPS="10",
        PADDIFF_MAX_PIXELS=str(64 * 64),
        PADDIFF_LORA_DIR=str(loras),
    )
    env.pop("PADDIFF_MODEL", None)
    log = tmp_path_factory.mktemp("webui") / "webui.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "paddiff.cli", "webui", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                urllib.request.urlopen(base, timeout=2).close()
                break
            except OSError:
                time.sleep(0.3)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def call(url, body=None):
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(base, job):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        status, state = call(base + f"api/jobs/{job}")
        assert status == 200
        if state["state"] in ("done", "error"):
            return state
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_page_and_options(webui):
    with urllib.request.urlopen(webui, timeout=10) as reply:
        assert b"<title>paddiff</title>" in reply.read()
    status, options = call(webui + "api/options")
    assert status == 200
    assert (options["width"], options["height"], options["max_steps"]) == (64, 64, 10)
    assert "DPM++ 2M Karras" in options["samplers"] and options["loras"] == ["tiny"]


def test_generation_as_a_job_with_parameters_in_the_png(webui):
    fields = {"prompt": "a yellow star on a purple background", "steps": 4, "seed": 2}
    status, started = call(webui + "api/jobs", dict(fields, num_images=2, scheduler="Euler a"))
    assert status == 200
    done = wait_for(webui, started["job"])
    assert done["state"] == "done" and (done["step"], done["total"]) == (4, 4)
    assert [item["seed"] for item in done["images"]] == [2, 3]
    picture = Image.open(io.BytesIO(base64.b64decode(done["images"][0]["png"])))
    assert picture.text["parameters"] == done["images"][0]["parameters"]
    assert "Sampler: Euler a" in picture.text["parameters"]


def test_the_same_refusals_as_hub_serving(webui):
    status, reply = call(webui + "api/jobs", {"prompt": "a cat", "steps": 11})
    assert (
        status == 400
        and reply["error"] == "invalid request: 'steps' must be between 1 and 10, got 11"
    )
    status, reply = call(webui + "api/jobs", {"prompt": "a cat", "width": 128, "height": 128})
    assert status == 400 and "this server allows at most 4096" in reply["error"]
    status, reply = call(webui + "api/jobs", b"{not json")
    assert status == 400 and "not JSON" in reply["error"]
    status, started = call(webui + "api/jobs", {"prompt": "a scene full of gore", "steps": 2})
    done = wait_for(webui, started["job"])
    assert done["error"] == "the prompt was refused by the safety filter (category: violence)"
    assert call(webui + "api/jobs/999")[0] == 404


def test_a_lora_from_the_operator_folder_changes_the_image_and_others_are_refused(webui):
    fields = {"prompt": "a red circle on a blue background", "steps": 3, "seed": 5}
    pictures = []
    for loras in ([], ["tiny"], []):  # off, on, off again: the LoRA is disabled after use
        status, started = call(webui + "api/jobs", dict(fields, loras=loras))
        assert status == 200
        done = wait_for(webui, started["job"])
        assert done["state"] == "done", done
        pictures.append(done["images"][0]["png"])
    assert pictures[0] != pictures[1] and pictures[0] == pictures[2]
    status, reply = call(webui + "api/jobs", dict(fields, loras=["../tiny"]))
    assert status == 400 and "give a name from the folder, not a path" in reply["error"]
