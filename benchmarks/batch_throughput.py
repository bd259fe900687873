"""Throughput of `paddiff batch` with the embedded model: 1 vs N local workers, and Ray.

    python benchmarks/batch_throughput.py --images 48 --rounds 2 [--ray 127.0.0.1:6379]

Each configuration runs the same job file into a fresh folder, as a new `paddiff batch` process
(start-up and model loading included, as a user sees it); configurations alternate within each
round, so a noisy machine hurts them alike. Prints the wall time and images per minute of each
run and the median per configuration. For Ray, start a head first, e.g.
`ray start --head --node-ip-address 127.0.0.1 --num-cpus 2`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PADDIFF = str(Path(sys.executable).parent / "paddiff")


def job_file(folder: Path, images: int, steps: int) -> Path:
    prompts = [
        "a red circle on a blue background",
        "a yellow star on a purple background",
        "蓝色背景上的一个白色三角形",
        "a small green cross on a black background",
    ]
    per_job = images // len(prompts)
    path = folder / "jobs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"job{i}", "prompt": p, "seed": 1, "count": per_job, "steps": steps})
            + "\n"
            for i, p in enumerate(prompts)
        )
    )
    return path


def run(jobs: Path, out: Path, extra: list[str]) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(
        [PADDIFF, "batch", str(jobs), "--out", str(out), "--no-progress", *extra],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{extra}: exit {result.returncode}\n{result.stderr[-2000:]}")
    written = int(re.search(r"(\d+) images written", result.stdout).group(1))
    return seconds, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="N of the N-worker runs")
    parser.add_argument("--ray", default=None, help="Ray address; no Ray runs without it")
    args = parser.parse_args()
    configurations = {
        "1 process": [],
        f"{args.workers} workers": ["--workers", str(args.workers)],
    }
    if args.ray:
        configurations[f"ray, {args.workers} actors"] = [
            "--ray",
            args.ray,
            "--workers",
            str(args.workers),
        ]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        jobs = job_file(folder, args.images, args.steps)
        times: dict[str, list[float]] = {name: [] for name in configurations}
        for round_number in range(args.rounds):
            for name, extra in configurations.items():
                seconds, written = run(jobs, folder / "out", extra)
                times[name].append(seconds)
                print(
                    f"round {round_number + 1}  {name:18s} {written} images  {seconds:6.1f} s  "
                    f"{60 * written / seconds:6.1f} images/min",
                    flush=True,
                )
        print("\nmedian per configuration:")
        base = statistics.median(times["1 process"])
        for name, values in times.items():
            median = statistics.median(values)
            print(
                f"  {name:18s} {median:6.1f} s  {60 * args.images / median:6.1f} images/min  "
                f"({base / median:.2f}x the single process)"
            )


if __name__ == "__main__":
    main()
