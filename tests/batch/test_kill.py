"""Exactly once under SIGKILL: `paddiff batch` killed mid-run, then run again; and a `--workers 2`
run whose worker is killed. Every image must be there once, with the pixels of an uninterrupted
run. The embedded model, in real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np

from support.batch_helpers import (
    PADDIFF,
    TOTAL,
    assert_exactly_once,
    pixels,
    pngs,
    wait_for_images,
)
from support.helpers import run_cli


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
