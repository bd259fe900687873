"""One SD 1.5-size UNet call (2x4x32x32 + 2x77x768) with every runtime back end paddiff has,
against OpenVINO and ONNX Runtime on the same UNet exported from diffusers, in one run.

    flock /work/bigmem.lock python benchmarks/performance/unet_call.py MODEL \
        [--rounds 2] [--calls 5] [--cache DIR] [--out results.json]

MODEL is a folder written by unet_call_anchor_model.py (the diffusers UNet, its ONNX export,
the inputs and torch's output). Each (side, precision) runs in a process of its own (one UNet
in memory at a time), `--calls` timed calls after a first one; the rounds alternate the order
of the sides (forward, then backward, ...) so drift of a shared machine hits all alike; the
table gives the median over all timed calls of all rounds. A preparation pass first fills the
export cache (Paddle programs, OpenVINO IR), and its first-call time is the cold-cache cost.
Accuracy: each output against diffusers' f32 output (torch.npz), and each bf16 output against
the same back end's f32 output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIDES = [
    ("paddiff:paddle-inference", "fp32"),
    ("paddiff:openvino", "fp32"),
    ("anchor:openvino", "fp32"),
    ("anchor:onnxruntime", "fp32"),
    ("paddiff:paddle-inference", "bf16"),
    ("paddiff:openvino", "bf16"),
    ("anchor:openvino", "bf16"),
]


def cpu() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = next(
        line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line
    )
    flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if "flags" in line)
    wanted = [f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    return f"{model}, {len(os.sched_getaffinity(0))} cores, {' '.join(wanted)}"


def run(model: Path, side: str, precision: str, calls: int, cache: str, out: Path) -> dict:
    command = [sys.executable, str(HERE / "unet_call_worker.py"), str(model), side, precision]
    command += ["--calls", str(calls), "--cache", cache, "--out", str(out)]
    subprocess.run(command, check=True, env={**os.environ, "PADDIFF_THREADS": "2"})
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--cache", default=None, help="export cache (default: a new folder)")
    parser.add_argument("--out", type=Path, default=Path("unet_call.json"))
    parser.add_argument(
        "--skip-prepare", action="store_true", help="the cache is filled already: no cold pass"
    )
    parser.add_argument(
        "--sides",
        default=None,
        help="comma-separated sides to run (e.g. paddiff:openvino,anchor:openvino; default: all "
        f"of {', '.join(dict.fromkeys(s for s, _ in SIDES))})",
    )
    args = parser.parse_args()
    sides = SIDES
    if args.sides:
        wanted = set(args.sides.split(","))
        unknown = wanted - {side for side, _ in SIDES}
        if unknown:
            parser.error(f"unknown side(s): {', '.join(sorted(unknown))}")
        sides = [entry for entry in SIDES if entry[0] in wanted]
    cache = args.cache or tempfile.mkdtemp(prefix="paddiff-unet-call-")
    work = Path(tempfile.mkdtemp(prefix="paddiff-unet-call-results-"))
    results = {"machine": cpu(), "python": platform.python_version(), "sides": {}}
    prepared = {}
    for side, precision in sides:  # fills the cache; its first call is the cold-cache cost
        if side.startswith("paddiff:") and precision == "fp32" and not args.skip_prepare:
            prepared[side] = run(args.model, side, precision, 1, cache, work / "prep.json")
            print(f"prepared {side}: first call {prepared[side]['first_call_s']:.1f} s", flush=True)
    times: dict[str, list[float]] = {}
    outputs: dict[str, np.ndarray] = {}
    for round_index in range(args.rounds):
        order = sides if round_index % 2 == 0 else sides[::-1]
        for side, precision in order:
            key = f"{side} {precision}"
            out = work / f"{side.replace(':', '-')}-{precision}-{round_index}.json"
            result = run(args.model, side, precision, args.calls, cache, out)
            times.setdefault(key, []).extend(result["times_s"])
            outputs[key] = np.load(out.with_suffix(".npy"))
            results["sides"].setdefault(key, {"rounds": []})["rounds"].append(result)
            print(f"{key}: median {result['median_s']:.3f} s", flush=True)
    reference = np.load(args.model / "torch.npz")["out_sample"]
    for key, entry in results["sides"].items():
        side, precision = key.rsplit(" ", 1)
        output = outputs[key]
        entry["median_s"] = float(np.median(times[key]))
        entry["calls"] = len(times[key])
        entry["max_abs_vs_torch_f32"] = float(np.abs(output - reference).max())
        entry["mean_abs_vs_torch_f32"] = float(np.abs(output - reference).mean())
        if precision == "bf16":
            own = outputs[f"{side} fp32"]
            entry["max_abs_vs_own_f32"] = float(np.abs(output - own).max())
            entry["mean_abs_vs_own_f32"] = float(np.abs(output - own).mean())
        if side in prepared:
            entry["cold_first_call_s"] = prepared[side]["first_call_s"]
    args.out.write_text(json.dumps(results, indent=1))
    print(f"machine: {results['machine']}")
    print("| side | precision | median s/call | max / mean abs err vs torch f32 | vs own f32 |")
    print("| --- | --- | --- | --- | --- |")
    for key, entry in results["sides"].items():
        side, precision = key.rsplit(" ", 1)
        own = (
            f"{entry['max_abs_vs_own_f32']:.2g} / {entry['mean_abs_vs_own_f32']:.2g}"
            if "max_abs_vs_own_f32" in entry
            else "-"
        )
        print(
            f"| {side} | {precision} | {entry['median_s']:.3f} | "
            f"{entry['max_abs_vs_torch_f32']:.2g} / {entry['mean_abs_vs_torch_f32']:.2g} | {own} |"
        )


if __name__ == "__main__":
    main()
