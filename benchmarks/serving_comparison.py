"""`hub serving` (one process, or two behind a round-robin) against `paddiff serve --ray`
(replicas, dynamic batching) on this machine: requests per minute with concurrent clients.

    python benchmarks/serving_comparison.py --rounds 2 --clients 8 --requests 32 --steps 20

Each configuration is started, warmed up with one request, measured with
benchmarks/serving_throughput.py's `measure`, and stopped before the next starts, so only one
server holds the CPUs at a time; the configurations alternate within each round. Every server
listens on 127.0.0.1, and `paddiff serve --ray` starts its own Ray instance on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serving_throughput import machine, measure, post  # noqa: E402

BIN = Path(sys.executable).parent
HUB_ENTRY = "import sys; from paddlehub.commands.utils import execute; sys.exit(execute())"


def hub_servers(count: int, home: str, base_port: int):
    """`count` hub serving processes, each pinned to its own core when there are enough."""
    cores = sorted(os.sched_getaffinity(0))
    processes, urls = [], []
    for k in range(count):
        port = base_port + k
        command = [sys.executable, "-c", HUB_ENTRY, "serving", "start", "-m", "paddiff"]
        command += ["-p", str(port)]
        if count > 1 and count <= len(cores):
            command = ["taskset", "-c", str(cores[k])] + command
        env = dict(os.environ, HUB_HOME=home)
        if count > 1:
            env.update(OMP_NUM_THREADS="1", PADDIFF_THREADS="1")
        processes.append(
            subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        urls.append(f"http://127.0.0.1:{port}/predict/paddiff")
    return processes, urls


def ray_server(port: int, replicas: int, num_cpus: float, extra: list[str]):
    command = [str(BIN / "paddiff"), "serve", "--ray", "--port", str(port)]
    command += ["--replicas", str(replicas), "--num-cpus", str(num_cpus), *extra]
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return [process], [f"http://127.0.0.1:{port}/predict/paddiff"]


def wait_ready(urls, processes, body, timeout=300) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            assert all(p.poll() is None for p in processes), "a server exited"
            try:
                post(url, dict(body, seed=12345), 600)  # the warm-up request
                break
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, f"{url} did not come up"
                time.sleep(2)


def stop(processes) -> None:
    for process in processes:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompt", default="蓝色背景上的红色圆形")
    parser.add_argument("--port", type=int, default=8951)
    args = parser.parse_args()
    body = {"prompt": args.prompt, "steps": args.steps}
    home = tempfile.mkdtemp(prefix="hubhome")
    subprocess.run(
        [str(BIN / "paddiff"), "hub", "install"],
        env=dict(os.environ, HUB_HOME=home),
        check=True,
        capture_output=True,
    )
    cpus = len(os.sched_getaffinity(0))
    configurations = {
        "hub serving, 1 process": lambda: hub_servers(1, home, args.port),
        f"hub serving, {cpus} processes (1 core each), round-robin": lambda: hub_servers(
            cpus, home, args.port
        ),
        f"serve --ray, 1 replica x {cpus} CPUs": lambda: ray_server(args.port, 1, cpus, []),
        f"serve --ray, {cpus} replicas x 1 CPU": lambda: ray_server(args.port, cpus, 1, []),
        f"serve --ray, 1 replica x {cpus} CPUs, --denoiser-batch-size 0": lambda: ray_server(
            args.port, 1, cpus, ["--denoiser-batch-size", "0"]
        ),
    }
    print(json.dumps({"machine": machine(), "body": body, "clients": args.clients}), flush=True)
    for round_number in range(1, args.rounds + 1):
        names = list(configurations)
        if round_number % 2 == 0:
            names.reverse()  # alternate the order between rounds
        for name in names:
            began = time.perf_counter()
            processes, urls = configurations[name]()
            try:
                wait_ready(urls, processes, body)
                ready = time.perf_counter() - began
                result = measure(urls, args.clients, args.requests, body, 600)
            finally:
                stop(processes)
            result.update(configuration=name, round=round_number, start_s=round(ready, 1))
            print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
