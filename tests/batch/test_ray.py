"""`paddiff batch --ray` on a real local Ray head (loopback, 2 CPUs) with 2 actors, one of them
killed mid-run: every image once, pixels equal to a single-process run.

Needs the `ray` extra. These tests take over a minute (starting the head and the actors), so
they are marked slow and CI runs them in their own step (.ci/run), which sets PADDIFF_CI_RAY=1
so that a missing Ray fails there instead of skipping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from support.batch_helpers import PADDIFF, TOTAL, assert_exactly_once, wait_for_images
from support.ray_cluster import local_ray_head, processes_with

if os.environ.get("PADDIFF_CI_RAY"):
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module", name="ray_head")
def ray_head_fixture():
    """A Ray head on 127.0.0.1 with 2 CPUs (support.ray_cluster)."""
    with local_ray_head(cpus=2) as (address, _):
        yield address


def actor_pids() -> list[int]:
    return processes_with("RayTaskRunner")


def test_ray_batch_with_a_killed_actor_gives_every_image_once(
    ray_head, job_file, reference, tmp_path
):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            PADDIFF,
            "batch",
            str(job_file),
            "--out",
            str(out),
            "--ray",
            ray_head,
            "--workers",
            "2",
            "--chunk",
            "1",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_images(out, 3, process)
        actors = actor_pids()
        assert len(actors) == 2, actors
        os.kill(actors[0], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert f"{TOTAL} images written" in stdout
    assert_exactly_once(out, reference)
    # and a rerun on the cluster has nothing left to do
    again = subprocess.run(
        [PADDIFF, "batch", str(job_file), "--out", str(out), "--ray", ray_head, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 images written" in again.stdout and f"{TOTAL} already done" in again.stdout
    assert json.loads((out / "metadata.jsonl").read_text().splitlines()[0])["id"] == "circles"


def test_ray_batch_carries_control_nets(ray_head, tmp_path):
    """A job with two control nets (one by name, one by path) on the cluster: the actors read
    the nets and control images from the paths the task carries, and the image equals a
    single-process run's, bit for bit."""
    import numpy as np
    from paddiff import batch
    from PIL import Image

    from support.batch_helpers import metadata, pixels
    from support.fixture_configs import FIXTURES

    control = FIXTURES / "controlnet"
    hint = np.zeros((32, 32, 3), np.uint8)
    hint[8:24, 8:24] = 255
    Image.fromarray(hint).save(tmp_path / "hint.png")
    units = [
        {"name": "cn_a", "image": "hint.png", "scale": 0.8},
        {"path": str(control / "cn_b"), "image": "hint.png", "preprocessor": "canny"},
    ]
    job = {"id": "controlled", "prompt": "a red circle", "model": str(FIXTURES / "sd" / "sd1")}
    job.update(seed=3, count=2, steps=2, controlnets=units, guess_mode=True)
    job_file = tmp_path / "jobs.jsonl"
    job_file.write_text(json.dumps(job) + "\n")
    here = tmp_path / "here"
    summary = batch.run_batch(
        job_file, here, batch.run_here(batch.TaskRunner(here)), progress=False,
        controlnet_dir=control,
    )  # fmt: skip
    assert summary.written == 2
    out = tmp_path / "ray"
    done = subprocess.run(
        [PADDIFF, "batch", str(job_file), "--out", str(out), "--ray", ray_head, "--workers", "2",
         "--chunk", "1", "--controlnet-dir", str(control), "--no-progress"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines, expected = metadata(out), metadata(here)
    assert [m["file"] for m in lines] == [m["file"] for m in expected]
    for line in lines:
        assert np.array_equal(pixels(out / line["file"]), pixels(here / line["file"]))
        assert "Model: cn_b [" in line["settings"]["controlnet_1"]
