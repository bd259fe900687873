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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.batch_helpers import PADDIFF, TOTAL, assert_exactly_once, wait_for_images

if os.environ.get("PADDIFF_CI_RAY"):
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.ray]
RAY = str(Path(sys.executable).parent / "ray")
# Every Ray process of these tests talks over loopback only. `--node-ip-address` alone does not do
# it: Ray's workers and drivers look their address up "from the network's perspective" (the
# machine's interface address) unless this switch, which Ray reads to keep a single-machine
# cluster on 127.0.0.1, is off.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                table[int(entry.name)] = (
                    int(stat.rsplit(")", 1)[1].split()[1]),
                    (entry / "cmdline").read_bytes(),
                )
            except OSError:
                pass
    return table


def processes_with(text: str) -> list[int]:
    return [pid for pid, (_, command) in process_table().items() if text.encode() in command]


def cluster_processes(folder: str) -> set[int]:
    """The head's processes (their command lines name its temporary folder) and everything they
    started (Ray renames its agents' command lines, so those are found by parentage)."""
    table = process_table()
    found = {pid for pid, (_, command) in table.items() if folder.encode() in command}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs, its own temporary folder, stopped afterwards (its
    processes are found by that folder, so no other Ray on the machine is touched)."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a limit
    port = free_port()
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--include-dashboard",
            "false",
            "--temp-dir",
            folder,
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        status = subprocess.run([RAY, "status", "--address", address], capture_output=True)
        if status.returncode == 0:
            break
        assert head.poll() is None, "ray start failed"
        assert time.monotonic() < deadline, "the Ray head did not come up"
        time.sleep(1)
    yield address
    started = cluster_processes(folder)
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        head.kill()
    for pid in started & set(process_table()):  # anything the head left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
