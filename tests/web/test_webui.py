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
def control_folder(tmp_path_factory):
    """The operator's control-net folder: the embedded model's shipped control net, by name."""
    from paddiff.plugins.embedded.train_control import CONTROL_DIR

    folder = tmp_path_factory.mktemp("controlnets")
    (folder / "embedded").symlink_to(CONTROL_DIR, target_is_directory=True)
    return folder


def silhouette_base64() -> str:
    """A white disc on black, off the centre (where the embedded model draws by default)."""
    import numpy as np

    y, x = np.mgrid[:64, :64]
    disc = ((x - 18) ** 2 + (y - 44) ** 2 <= 11**2).astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.repeat(disc[..., None], 3, axis=2)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def webui(tmp_path_factory, control_folder):
    port = free_port()
    loras = tmp_path_factory.mktemp("loras")
    write_tiny_lora(loras)
    env = dict(
        os.environ,
        PADDIFF_MAX_STEPS="10",
        PADDIFF_MAX_PIXELS=str(64 * 64),
        PADDIFF_LORA_DIR=str(loras),
        PADDIFF_CONTROLNET_DIR=str(control_folder),
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
    assert options["controls"] == ["embedded"] and options["max_controlnets"] == 2
    assert {"none", "canny", "scribble", "invert"} <= set(options["preprocessors"])


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


def test_a_control_net_from_the_operator_folder_steers_the_image(webui):
    """The page's request: hub serving's "controlnets" schema with a data-URL control image."""
    fields = {"prompt": "a red circle on a blue background", "steps": 6, "seed": 4}
    control = {"name": "embedded", "image": silhouette_base64(), "preprocessor": "none"}
    done = {}
    for name, extra in (
        ("plain", {}),
        ("control", {"controlnets": [control]}),
        ("guess", {"controlnets": [dict(control, scale=0.7, end=0.8)], "guess_mode": True}),
        ("plain-again", {}),
    ):
        status, started = call(webui + "api/jobs", dict(fields, **extra))
        assert status == 200, started
        done[name] = wait_for(webui, started["job"])
        assert done[name]["state"] == "done", done[name]
    image = {name: item["images"][0] for name, item in done.items()}
    assert image["control"]["png"] != image["plain"]["png"]
    assert image["plain-again"]["png"] == image["plain"]["png"]  # the net is unloaded after use
    parameters = image["control"]["parameters"]
    assert 'ControlNet 0: "Module: none, Model: embedded [' in parameters
    assert "Control Mode: Balanced" in parameters
    guess = image["guess"]["parameters"]
    assert "Weight: 0.7" in guess and "Guidance End: 0.8" in guess
    assert "Control Mode: ControlNet is more important" in guess
    picture = Image.open(io.BytesIO(base64.b64decode(image["control"]["png"])))
    assert picture.text["parameters"] == parameters
    assert "ControlNet" not in image["plain"]["parameters"]


def test_control_refusals_are_hub_servings(webui, control_folder):
    from paddiff.serving import RequestError, ServingLimits, parse_request

    limits = ServingLimits(controlnet_dirs=(str(control_folder),))  # as hub serving reads them
    disc = silhouette_base64()
    for controls, words in (
        ([{"name": "nope", "image": disc}], "no control net named 'nope'; available: embedded"),
        ([{"name": "../x", "image": disc}], "give a name from the folder, not a path"),
        ([{"name": "embedded", "image": disc, "preprocessor": "cany"}], "known: canny"),
        ([{"name": "embedded", "image": disc, "scale": 9}], "scale must be a number in"),
        ([{"name": "embedded", "image": disc}] * 3, "this server allows 2"),
    ):
        status, reply = call(webui + "api/jobs", {"prompt": "a cat", "controlnets": controls})
        with pytest.raises(RequestError) as served:
            parse_request({"prompt": "a cat", "controlnets": controls}, limits)
        assert status == 400 and reply["error"] == f"invalid request: {served.value}"
        assert words in reply["error"] and str(control_folder) not in reply["error"]
    status, reply = call(webui + "api/jobs", {"prompt": "a cat", "guess_mode": True})
    assert status == 400 and reply["error"] == (
        "invalid request: 'guess_mode' applies only with 'controlnets'"
    )
