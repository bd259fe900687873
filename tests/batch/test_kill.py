"""Exactly once under SIGKILL: `paddiff batch` killed mid-run, then run again; and a `--workers 2`
run whose worker is killed. Every image must be there once, with the pixels of an uninterrupted
run. The embedded model, in real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from paddiff import batch
from PIL import Image

from support.helpers import run_cli

PADDIFF = str(Path(sys.executable).parent / "paddiff")
JOBS = [
    {
        "id": "circles",
        "prompt": "a red circle on a blue background",
        "seed": 1,
        "count": 6,
        "steps": 8,
        "labels": {"shape": "circle"},
    },
    {
        "id": "stars",
        "prompt": "a yellow star on a purple background",
        "seed": 1,
        "count": 6,
        "steps": 8,
        "scheduler": "euler-a",
    },
]
TOTAL = 12


@pytest.fixture(scope="module")
def job_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "jobs.jsonl"
    path.write_text("".join(json.dumps(job) + "\n" for job in JOBS))
    return path


@pytest.fixture(scope="module")
def reference(job_file, tmp_path_factory) -> dict[str, np.ndarray]:
    """file -> pixels of an uninterrupted run in this process."""
    out = tmp_path_factory.mktemp("reference")
    runner = batch.TaskRunner(out)
    summary = batch.run_batch(job_file, out, batch.run_here(runner), chunk=4, progress=False)
    assert summary.written == TOTAL
    return {m["file"]: pixels(out / m["file"]) for m in metadata(out)}


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def metadata(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def pngs(out) -> list[str]:
    folder = out / "images"
    return (
        sorted(p.relative_to(out).as_posix() for p in folder.rglob("*.png"))
        if folder.is_dir()
        else []
    )


def wait_for_images(out, count: int, process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(pngs(out)) < count:
        assert process.poll() is None, "the batch ended before it could be killed"
        assert time.monotonic() < deadline, "no images appeared"
        time.sleep(0.05)


def assert_exactly_once(out, reference) -> None:
    lines = metadata(out)
    files = [m["file"] for m in lines]
    assert len(files) == len(set(files)) == TOTAL  # one line per image, none twice
    assert pngs(out) == sorted(files) == sorted(reference)  # no image missing, none extra
    assert not [p for p in (out / "images").rglob("*") if p.is_file() and p.suffix != ".png"]
    for line in lines:
        assert np.array_equal(pixels(out / line["file"]), reference[line["file"]]), line["file"]


def test_killed_run_then_rerun_gives_every_image_once(job_file, reference, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [PADDIFF, "batch", str(job_file), "--out", str(out), "--chunk", "1", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_images(out, 3, process)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    done = pngs(out)
    assert 3 <= len(done) < TOTAL
    for file in done:  # whatever is under a real name is a whole image
        assert np.array_equal(pixels(out / file), reference[file])
    result = run_cli("batch", str(job_file), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    # the image in flight may have been renamed into place before its metadata line was written
    already = int(result.stdout.split(" already done")[0].rsplit(" ", 1)[1])
    assert already in (len(done) - 1, len(done))
    assert_exactly_once(out, reference)


def worker_pids(parent: int) -> list[int]:
    """The spawned worker processes of `parent` (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_is_replaced_and_its_images_made_once(job_file, reference, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            PADDIFF,
            "batch",
            str(job_file),
            "--out",
            str(out),
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
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=150)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"{TOTAL} images written" in stdout
    assert_exactly_once(out, reference)
