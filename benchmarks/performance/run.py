"""paddiff against diffusers (PyTorch CPU) and ppdiffusers (Paddle dynamic graph), in one run.

    python benchmarks/performance/run.py \
        --torch-python /path/to/torch-venv/bin/python \
        --ppdiffusers-python /path/to/ppdiffusers-venv/bin/python \
        [--workloads unet32 unet64 vae256 vae512 text e2e256] [--bf16] [--out results.json]

Every (framework, workload) pair runs in a fresh process (so peak memory is per workload), with
the same thread count, after one warm-up call; medians of several calls are reported, with
ratios to diffusers at the same precision (--bf16 adds paddiff's precision="bf16" and diffusers
with bfloat16 weights, for CPUs with AVX512-BF16 or AMX). How to make the torch and ppdiffusers
environments: docs/performance.md.
Frameworks whose interpreter is not given are skipped. The machine is described in the output,
and the fp32 GEMM rate of NumPy/OpenBLAS is measured so the UNet's achieved GFLOP/s can be read
against the hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import process  # noqa: E402
import workloads  # noqa: E402

SECOND_PASS = {"paddiff (dynamic)"}


def machine() -> dict:
    flags = ""
    model = platform.processor()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        )
        flags = next(
            line.split(":", 1)[1] for line in cpuinfo.splitlines() if line.startswith("flags")
        )
    except (OSError, StopIteration):
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "fma")
    return {
        "cpu": model,
        "cores_available": len(os.sched_getaffinity(0)),
        "cpu_flags": [f for f in wanted if f in flags.split()],
        "python": platform.python_version(),
    }


def gemm_gflops(python: str) -> float:
    """fp32 GEMM rate of NumPy's BLAS on 4096^3 (OPENBLAS_CORETYPE unset: it slows new numpy)."""
    code = (
        "import numpy as np, time\n"
        "a = np.random.rand(4096, 4096).astype(np.float32); b = a.copy(); a @ b\n"
        "ts = []\n"
        "for _ in range(3):\n"
        "    s = time.perf_counter(); a @ b; ts.append(time.perf_counter() - s)\n"
        "print(2 * 4096**3 / min(ts) / 1e9)\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip())


def run_worker(command: list[str], workload: str, env: dict) -> dict | None:
    start = time.perf_counter()
    result = subprocess.run([*command, workload], capture_output=True, text=True, env=env, cwd=HERE)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode == 0 and not lines:  # the worker skipped it and said why
        print(f"  {result.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        return None
    if result.returncode != 0 or not lines:
        print(f"  FAILED: {' '.join(command)} {workload}\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    record = json.loads(lines[-1])
    record["process_s"] = round(time.perf_counter() - start, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--torch-python", help="interpreter with torch + diffusers + transformers")
    parser.add_argument("--ppdiffusers-python", help="interpreter with ppdiffusers")
    parser.add_argument("--paddiff-python", default=sys.executable)
    parser.add_argument("--workloads", nargs="+", default=list(workloads.WORKLOADS))
    parser.add_argument(
        "--frameworks", nargs="+", help="only these (names as in the table, e.g. diffusers)"
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time bfloat16: paddiff static and diffusers (with --process: paddiff on "
        "each runtime and a diffusers script in bfloat16)",
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--out", type=Path, help="also write the results as JSON here (after every result)"
    )
    parser.add_argument("--table", type=Path, help="only print the table of a --out JSON file")
    parser.add_argument(
        "--process",
        metavar="MODEL_FOLDER",
        help="instead of the workloads: whole processes (`paddiff generate` against a diffusers "
        "script) on this diffusers folder; see process.py",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--process: rounds (medians)")
    parser.add_argument("--steps", type=int, default=20, help="--process: sampling steps")
    parser.add_argument(
        "--process-cache", help="--process: keep paddiff's warm program cache in this folder"
    )
    parser.add_argument(
        "--runtimes",
        nargs="*",
        default=[],
        help="--process: also time these runtime back ends (e.g. openvino), programs cached",
    )
    parser.add_argument(
        "--no-cold", action="store_true", help="--process: no empty-cache (export) runs"
    )
    args = parser.parse_args()
    if args.table:
        saved = json.loads(args.table.read_text())
        if "runs" in saved:  # a --process run (cut short, its info may be missing)
            print(process.process_table(saved, saved.get("info") or {"machine": {}, "threads": ""}))
        else:
            print_table(saved["results"], saved["info"])
        return

    env = dict(
        os.environ,
        BENCH_THREADS=str(args.threads),
        PADDIFF_THREADS=str(args.threads),
        OMP_NUM_THREADS=str(args.threads),
        PYTHONPATH=str(HERE),
    )
    env.setdefault("BENCH_CACHE_DIR", str(Path.home() / ".cache" / "paddiff-benchmark"))
    frameworks = {"paddiff (static)": [args.paddiff_python, "worker_paddiff.py", "static"]}
    if args.torch_python:
        frameworks["diffusers"] = [args.torch_python, "worker_diffusers.py"]
    if args.ppdiffusers_python:
        frameworks["ppdiffusers"] = [args.ppdiffusers_python, "worker_ppdiffusers.py"]
    if args.bf16:
        frameworks["paddiff (static bf16)"] = [
            args.paddiff_python,
            "worker_paddiff.py",
            "static-bf16",
        ]
        if args.torch_python:
            frameworks["diffusers (bf16)"] = [args.torch_python, "worker_diffusers.py", "bf16"]
    frameworks["paddiff (dynamic)"] = [args.paddiff_python, "worker_paddiff.py", "dynamic"]
    if args.frameworks:
        frameworks = {k: v for k, v in frameworks.items() if k in args.frameworks}
    info = {
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": " ".join(sys.argv),
        "threads": args.threads,
        "gemm_gflops": round(gemm_gflops(args.paddiff_python), 1),
    }
    print(json.dumps(info))
    if args.process:
        record = process.run_process_benchmark(args, env, info)
        if args.out:
            args.out.write_text(json.dumps(record, indent=2, default=str))
        print(process.process_table(record, info))
        return
    results = []
    # paddiff's dynamic graph is the slowest and compares with no target: its rows run in a
    # second pass, after every other row, so that a run cut short still has the rest.
    passes = [
        {k: v for k, v in frameworks.items() if k not in SECOND_PASS},
        {k: v for k, v in frameworks.items() if k in SECOND_PASS},
    ]
    for pass_frameworks in passes:
        for workload in args.workloads:
            for name, command in pass_frameworks.items():
                if workload in workloads.PADDIFF_ONLY and not name.startswith("paddiff"):
                    continue
                print(f"{workload}: {name} ...", file=sys.stderr, flush=True)
                record = run_worker(command, workload, env)
                if record:
                    record["key"] = name
                    results.append(record)
                    print(json.dumps(record), flush=True)
                    if args.out:  # partial results survive a run cut short
                        args.out.write_text(
                            json.dumps({"info": info, "results": results}, indent=2)
                        )
    print_table(results, info)


def print_table(results: list[dict], info: dict) -> None:
    flops = {r["workload"]: r["flops"] for r in results if r.get("flops")}
    print(
        "\n| workload | framework | median s | speed-up vs diffusers (same precision) | GFLOP/s "
        "| peak RSS MB "
        "| first call s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for workload in dict.fromkeys(r["workload"] for r in results):
        rows = [r for r in results if r["workload"] == workload]
        for r in rows:
            reference = "diffusers (bf16)" if "bf16" in r["key"] else "diffusers"
            base = next((x["median_s"] for x in rows if x["key"] == reference), None)
            ratio = f"{base / r['median_s']:.2f}x" if base else "-"
            gflops = f"{flops[workload] / r['median_s'] / 1e9:.0f}" if workload in flops else "-"
            first = r.get("first_call_s", "-")
            print(
                f"| {workload} | {r['framework']} | {r['median_s']:.3f} | {ratio} | {gflops} "
                f"| {r['peak_rss_mb']} | {first} |"
            )
    versions = {}
    for r in results:
        versions.update(r.get("versions", {}))
    print(f"\nNumPy fp32 GEMM (4096^3): {info['gemm_gflops']} GFLOP/s")
    print(f"machine: {json.dumps(info['machine'])}, threads {info['threads']}")
    print(f"load average at start: {info.get('load_average_at_start')}")
    print(f"versions: {json.dumps(versions)}")


if __name__ == "__main__":
    main()
