"""`paddiff serve --ray` on a real local Ray head (loopback, 2 CPUs): 2 replicas answer
concurrent clients with the `hub serving` schema, batch compatible requests into one pipeline
call, give each request the pixels it gets alone, refuse bad requests as `hub serving` does,
and keep every socket on 127.0.0.1.

Needs the `ray` extra (Ray Serve); marked slow and ray, so it runs in `make test-ray`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from support.batch_helpers import PADDIFF
from support.processes import free_port
from support.ray_cluster import (
    cluster_processes,
    descendants,
    local_ray_head,
    only_loopback,
    tcp_addresses,
)

if os.environ.get("PADDIFF_CI_RAY"):
    import ray.serve  # noqa: F401
else:
    pytest.importorskip("ray.serve")

pytestmark = [pytest.mark.slow, pytest.mark.ray]
STEPS = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, serve process, Ray folder) of `paddiff serve --ray` with 2 replicas."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with local_ray_head(cpus=2) as (address, folder):
        port = free_port()
        env = dict(os.environ, PADDIFF_MAX_STEPS="30")
        with open(log, "w") as output:
            process = subprocess.Popen(
                [
                    PADDIFF,
                    "serve",
                    "--ray",
                    address,
                    "--port",
                    str(port),
                    "--replicas",
                    "2",
                    "--batch-wait-ms",
                    "300",
                    # a replica then holds at most 4 requests (2 batches' worth), so 6 concurrent
                    # valid requests cannot all land on one replica: Ray's router spreads them
                    # only by queue length, and with room for 16 it sometimes did not
                    "--max-batch-size",
                    "2",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            deadline = time.monotonic() + 240
            while "paddiff: serving" not in log.read_text():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the deployment did not come up"
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/predict/paddiff", process, folder
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


def post(url, fields) -> dict:
    request = urllib.request.Request(
        url, json.dumps(fields).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=180) as answer:
        return json.loads(answer.read())


def decode(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("RGB"))


REQUESTS = [
    {"prompt": "a red circle on a blue background", "seed": 1, "steps": STEPS},
    {"prompt": "a yellow star on a purple background", "seed": 2, "steps": STEPS},
    {"prompt": "蓝色背景上的一个红色圆形", "seed": 3, "steps": STEPS, "num_images": 2},
    {"prompt": "a green square", "seed": 4, "steps": STEPS, "negative_prompt": "red"},
    {"prompt": "a red circle on a blue background", "seed": 1, "steps": STEPS + 2},
    {"prompt": "a yellow star", "seed": 5, "steps": STEPS + 2},
    {"prompt": "a red circle", "steps": 1000},
    {"prompt": "a scene full of gore", "steps": STEPS},
]


def test_concurrent_clients_get_batched_replies_with_their_own_pixels(served):
    import paddiff

    url, process, folder = served
    replies: list = [None] * len(REQUESTS)
    start = threading.Barrier(len(REQUESTS))

    def client(k):
        start.wait()
        replies[k] = post(url, REQUESTS[k])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(REQUESTS))]
    for thread in threads:
        thread.start()
    # while the cluster works: every socket of the server and the cluster is on loopback
    time.sleep(1)
    addresses = tcp_addresses(descendants({process.pid}) | cluster_processes(folder))
    for thread in threads:
        thread.join(timeout=300)
    assert "127.0.0.1" in addresses and only_loopback(addresses), addresses

    assert [r["status"] for r in replies] == ["000"] * 6 + ["101"] * 2, replies[-2:]
    assert replies[6] == {
        "status": "101",
        "msg": "invalid request: 'steps' must be between 1 and 30, got 1000",
        "results": "",
    }
    assert replies[7]["msg"] == "the prompt was refused by the safety filter (category: violence)"
    batches = [r["results"]["batch"] for r in replies[:6]]
    assert max(b["requests"] for b in batches) > 1, batches  # some requests shared a call
    assert len({b["replica"] for b in batches}) == 2, batches  # both replicas served
    pipeline = paddiff.load_pipeline()
    for fields, reply in zip(REQUESTS[:6], replies[:6], strict=True):
        count = fields.get("num_images", 1)
        alone = pipeline.text_to_image(
            fields["prompt"],
            fields.get("negative_prompt"),
            seed=fields["seed"],
            num_images_per_prompt=count,
            steps=fields["steps"],
            progress=False,
        )
        images = reply["results"]["images"]
        assert [item["seed"] for item in images] == [fields["seed"] + i for i in range(count)]
        for item, image in zip(images, alone.images, strict=True):
            assert np.array_equal(decode(item["image"]), np.asarray(image)), fields
            assert item["settings"]["prompt"] == fields["prompt"]


def test_bad_bodies_and_a_stop(served):
    url, process, _ = served
    request = urllib.request.Request(url, b"{not json", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=60)
    assert error.value.code == 400
    assert post(url, ["a list"])["msg"] == "invalid request: the request must be a JSON object"
    assert post(url, {"prompt": "x", "colour": "red"})["msg"].startswith(
        "invalid request: unknown field(s) colour"
    )
    assert post(url, {"prompt": "a red circle", "steps": 2, "seed": 1})["status"] == "000"
    process.send_signal(signal.SIGTERM)  # a service manager's stop: the app is removed
    assert process.wait(timeout=60) == 0
