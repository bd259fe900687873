"""Peak memory and time per step of `paddiff train lora`, with and without gradient
checkpointing, on the embedded model (or --model), each setting in its own process.

    python benchmarks/training_memory.py --data DIR [--batch 16] [--steps 6] [--rounds 2]

Settings alternate within each round; the table gives the median s/step (steps after the
first, which also encodes the latents) and the largest peak RSS of each setting.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"plain": [], "gradient checkpointing": ["--gradient-checkpointing"]}


def one_run(args, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "log.jsonl"
        command = [
            sys.executable, "-m", "paddiff.cli", "train", "lora", "--data", args.data,
            "--output", str(Path(scratch) / "x.safetensors"), "--steps", str(args.steps),
            "--batch-size", str(args.batch), "--no-progress", "--loss-log", str(log),
            "--threads", str(args.threads), *extra,
        ]  # fmt: skip
        if args.model:
            command += ["--model", args.model]
        started = time.time()
        # GNU time's %M: this process's own peak RSS in KiB (getrusage would give the
        # largest of all children so far)
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", *command], check=True, capture_output=True, text=True
        )
        peak = int(done.stderr.strip().splitlines()[-1])
        rates = [json.loads(line)["steps_per_s"] for line in log.read_text().splitlines()]
        # steps_per_s is cumulative; time of steps 2.. = difference of elapsed times
        elapsed = [(i + 1) / r for i, r in enumerate(rates)]
        per_step = (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)
        return {"peak_mb": round(peak / 1024), "s_per_step": per_step,
                "wall_s": time.time() - started}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        order = list(SETTINGS) if round_ % 2 == 0 else list(SETTINGS)[::-1]
        for name in order:
            results[name].append(one_run(args, SETTINGS[name]))
            print(name, results[name][-1], flush=True)
    print("| setting | peak RSS (MB) | s/step (median) |")
    print("| --- | --- | --- |")
    for name, runs in results.items():
        peak = max(r["peak_mb"] for r in runs)
        times = sorted(r["s_per_step"] for r in runs)
        print(f"| {name} | {peak} | {times[len(times) // 2]:.2f} |")


if __name__ == "__main__":
    main()
