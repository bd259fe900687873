"""Requests per minute that a running `hub serving start -m paddiff` answers, at 1..N clients.

    hub serving start -m paddiff -p 8866 &
    python benchmarks/serving_throughput.py --url http://127.0.0.1:8866/predict/paddiff \
        --clients 1 8 --requests 16 --steps 8

Each client sends its share of `--requests` one after another (distinct seeds); the figure is
answered requests / wall-clock minutes. Several `--url`s share the requests round-robin (a
stand-in for a load balancer in front of several `hub serving` instances). Every answer is checked for status "000". Standard library
only, so it runs from any Python.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def post(url: str, body: dict, timeout: float) -> tuple[float, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    return time.perf_counter() - started, reply


def measure(urls: list[str], clients: int, requests: int, body: dict, timeout: float) -> dict:
    bodies = [dict(body, seed=seed) for seed in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda b: post(urls[b["seed"] % len(urls)], b, timeout), bodies))
    elapsed = time.perf_counter() - started
    failed = [reply["msg"] for _, reply in results if reply.get("status") != "000"]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, first: {failed[0]}")
    latencies = [seconds for seconds, _ in results]
    return {
        "clients": clients,
        "requests": requests,
        "seconds": round(elapsed, 2),
        "requests_per_minute": round(60 * requests / elapsed, 1),
        "median_latency_s": round(statistics.median(latencies), 2),
        "max_latency_s": round(max(latencies), 2),
    }


def machine() -> str:
    """CPU model and core count, for the record (the server is assumed to run on this machine)."""
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", nargs="+", default=["http://127.0.0.1:8866/predict/paddiff"])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=16, help="per measurement")
    parser.add_argument("--prompt", default="一只戴着帽子的猫")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per request")
    args = parser.parse_args()
    body = {"prompt": args.prompt, "steps": args.steps}
    body.update({k: getattr(args, k) for k in ("width", "height") if getattr(args, k)})
    for url in args.url:  # warm-up, not counted
        post(url, dict(body, seed=12345), args.timeout)
    print(json.dumps({"machine": machine(), "body": body}))
    for clients in args.clients:
        print(json.dumps(measure(args.url, clients, args.requests, body, args.timeout)))


if __name__ == "__main__":
    main()
