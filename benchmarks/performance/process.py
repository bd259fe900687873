"""One image, one process: `paddiff generate` against a diffusers script, wall time and peak RSS.

    flock /work/bigmem.lock python benchmarks/performance/run.py --process MODEL_FOLDER \
        --torch-python /work/torchvenv/bin/python [--rounds 3] [--steps 20] [--out r.json]

What a user waits for when they run one command: interpreter start, imports, loading, the
prompt, every step, the decode and writing the PNG. MODEL_FOLDER is a diffusers folder both
sides read (benchmarks/make_fullsize_sd15.py writes one of SD 1.5's size; it needs a
`tokenizer/` folder, which `--process` adds from paddiff's shipped CLIP vocabulary if missing).
Both sides: 256x256, guidance 7.5, the same step count, DDIM, fp32, the same thread count; the
sides alternate within each round and medians are reported. paddiff runs with a warm program
cache (exported once before the first round) and, once per round, with an empty cache (the
export's extra time). Peak RSS is the child's `ru_maxrss` from `wait4`.

`--runtimes openvino` adds a warm side per runtime back end; `--bf16` adds bfloat16 sides:
paddiff with `PADDIFF_PRECISION=bf16` (on each runtime) and diffusers with
`torch_dtype=torch.bfloat16`. The table's ratios are against diffusers at the same precision.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT = "a photograph of an astronaut riding a horse"


def run_child(command: list[str], env: dict) -> dict:
    """Wall time, CPU time and peak RSS of one child process, which must succeed (it is reaped
    with wait4, whose rusage is the child's own)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # read the pipes in threads so a chatty child never blocks, then reap it ourselves
    chunks = {"out": [], "err": []}

    def drain(stream, into):
        for line in stream:
            into.append(line)

    readers = [
        threading.Thread(target=drain, args=(process.stdout, chunks["out"])),
        threading.Thread(target=drain, args=(process.stderr, chunks["err"])),
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    for reader in readers:
        reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    err = "".join(chunks["err"])
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),  # KiB on Linux
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "stdout": "".join(chunks["out"])[-2000:],
        "stderr": err[-2000:],
    }


def snapshot(repo: Path, into: Path) -> Path:
    """A frozen importable copy of the paddiff sources in `repo` (core/ as paddiff/, plugins/ as
    paddiff/plugins/), for BENCH_PADDIFF_PATH: a long benchmark then times the code it started
    with, whatever is edited in the work tree meanwhile."""
    package = into / "paddiff"
    shutil.rmtree(into, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(repo / "core", package, ignore=ignore)
    shutil.copytree(repo / "plugins", package / "plugins", ignore=ignore)
    shutil.copytree(repo / "hub_module", package / "hub_module", ignore=ignore)
    return into


def ensure_tokenizer(model: Path, paddiff_python: str) -> None:
    """diffusers needs `tokenizer/`; write SD's CLIP tokenizer from paddiff's shipped vocabulary."""
    if (model / "tokenizer").is_dir():
        return
    code = (
        "import sys; from paddiff.plugins.text_encoders.clip import CLIPTextModel\n"
        "CLIPTextModel.shipped_tokenizer(pad_token='<|endoftext|>').save_pretrained(sys.argv[1])\n"
    )
    subprocess.run([paddiff_python, "-c", code, str(model / "tokenizer")], check=True)


def commands(args, model: Path, out_dir: Path) -> dict[str, list[str]]:
    paddiff_cli = str(Path(args.paddiff_python).with_name("paddiff"))
    common = ["--steps", str(args.steps), "--guidance", "7.5", "--width", "256", "--height", "256"]
    return {
        "paddiff": [
            paddiff_cli,
            "generate",
            PROMPT,
            "--model",
            str(model),
            *common,
            "--seed",
            "0",
            "--scheduler",
            "ddim",
            "--no-progress",
            "--output",
            str(out_dir / "paddiff.png"),
        ],
        "diffusers": [
            args.torch_python,
            str(HERE / "worker_diffusers.py"),
            "process",
            str(model),
            str(out_dir / "diffusers.png"),
            str(args.steps),
            PROMPT,
        ],
    }


def run_process_benchmark(args, base_env: dict, info: dict) -> dict:
    model = Path(args.process).resolve()
    ensure_tokenizer(model, args.paddiff_python)
    work = Path(tempfile.mkdtemp(prefix="paddiff-process-bench-"))
    warm_cache = Path(args.process_cache or work / "warm-cache")
    env = dict(base_env, PADDIFF_CACHE_DIR=str(warm_cache), PADDIFF_EXECUTION="static")
    if os.environ.get("BENCH_PADDIFF_PATH"):  # a frozen copy of paddiff to time (snapshot())
        env["PYTHONPATH"] = os.environ["BENCH_PADDIFF_PATH"]
    cmds = commands(args, model, work)
    # warm paddiff sides -> their environment (each filled, and converted, before round 1)
    warm = warm_sides(getattr(args, "runtimes", None) or [], getattr(args, "bf16", False))
    diffusers_sides = {"diffusers": {}}
    if getattr(args, "bf16", False):
        diffusers_sides["diffusers bf16"] = {"BENCH_DTYPE": "bf16"}
    if not args.torch_python:
        diffusers_sides = {}
    results: dict[str, list[dict]] = {side: [] for side in [*warm, *diffusers_sides]}
    results["paddiff cold"] = []
    record = {"model": str(model), "steps": args.steps, "runs": results, "info": info}
    try:
        print("warming paddiff's program cache ...", file=sys.stderr, flush=True)
        # a --process-cache that already holds programs makes this a warm run, not an export
        record["first_export_was_cold"] = not (warm_cache.is_dir() and any(warm_cache.iterdir()))
        record["first_export"] = run_child(cmds["paddiff"], env)
        for side, extra in warm.items():
            if extra:
                record[f"first run ({side})"] = run_child(cmds["paddiff"], dict(env, **extra))
        for round_ in range(args.rounds):
            # alternate which side goes first, round by round
            order = [*warm, *diffusers_sides]
            if round_ % 2:
                order = [*diffusers_sides, *reversed(warm)]
            if not getattr(args, "no_cold", False):
                order.append("paddiff cold")
            for side in order:
                run_env = dict(env, **warm.get(side, diffusers_sides.get(side, {})))
                if side == "paddiff cold":
                    cold = work / f"cold-{round_}"
                    run_env = dict(env, PADDIFF_CACHE_DIR=str(cold))
                command = cmds["diffusers" if side in diffusers_sides else "paddiff"]
                print(f"round {round_ + 1}: {side} ...", file=sys.stderr, flush=True)
                result = run_child(command, run_env)
                if side == "paddiff cold":
                    shutil.rmtree(cold, ignore_errors=True)
                results[side].append(result)
                print(json.dumps({"side": side, **result}, default=str)[:400], flush=True)
                if args.out:
                    args.out.write_text(json.dumps(record, indent=2, default=str))
    finally:
        if not args.process_cache:
            shutil.rmtree(work, ignore_errors=True)
    return record


def warm_sides(runtimes: list[str], bf16: bool) -> dict[str, dict]:
    """Side name -> environment of each warm paddiff side."""
    sides = {"paddiff warm": {}}
    sides.update({f"paddiff warm ({name})": {"PADDIFF_RUNTIME": name} for name in runtimes})
    if bf16:
        sides["paddiff warm bf16"] = {"PADDIFF_PRECISION": "bf16"}
        for name in runtimes:
            sides[f"paddiff warm bf16 ({name})"] = {
                "PADDIFF_RUNTIME": name,
                "PADDIFF_PRECISION": "bf16",
            }
    return sides


def medians(runs: list[dict]) -> dict:
    if not runs:
        return {}
    return {
        key: statistics.median(r[key] for r in runs) for key in ("wall_s", "cpu_s", "peak_rss_gb")
    }


def process_table(record: dict, info: dict) -> str:
    """The table docs/performance.md shows. The run that filled the warm cache counts as a
    cold run too when it started from an empty cache."""
    runs = dict(record["runs"])
    if record.get("first_export") and record.get("first_export_was_cold", True):
        runs["paddiff cold"] = [record["first_export"], *runs["paddiff cold"]]
    bases = {"fp32": medians(runs["diffusers"]), "bf16": medians(runs.get("diffusers bf16", []))}
    lines = [
        f"| one process, {record['steps']} steps, 256x256 | wall s | vs diffusers | CPU s "
        "| vs diffusers | peak RSS GB | vs diffusers | runs (wall s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {
        "paddiff warm": "`paddiff generate`, programs cached",
        "paddiff cold": "`paddiff generate`, empty cache (exports)",
        "diffusers": "diffusers script (StableDiffusionPipeline)",
        "diffusers bf16": "diffusers script, `torch_dtype=torch.bfloat16`",
    }
    for side in runs:
        if side.startswith("paddiff warm") and side not in labels:
            options = "--precision bf16" if " bf16" in side else ""
            if "(" in side:
                options += f" --runtime {side[side.index('(') + 1 : -1]}"
            labels[side] = f"`paddiff generate {options.strip()}`, programs cached"
    for side, label in labels.items():
        m = medians(runs.get(side, []))
        if not m:
            continue
        base = bases["bf16" if "bf16" in side else "fp32"]
        ratios = {
            k: f"{m[k] / base[k]:.2f}x" if base else "-" for k in ("wall_s", "cpu_s", "peak_rss_gb")
        }
        walls = ", ".join(str(r["wall_s"]) for r in runs[side])
        lines.append(
            f"| {label} | {m['wall_s']:.1f} | {ratios['wall_s']} | {m['cpu_s']:.1f} "
            f"| {ratios['cpu_s']} | {m['peak_rss_gb']:.2f} | {ratios['peak_rss_gb']} | {walls} |"
        )
    warm, cold = medians(runs["paddiff warm"]), medians(runs["paddiff cold"])
    if warm and cold:
        lines.append(
            f"\nexport's extra time (cold - warm medians): wall {cold['wall_s'] - warm['wall_s']:.1f}"
            f" s, CPU {cold['cpu_s'] - warm['cpu_s']:.1f} s"
        )
    lines.append(f"machine: {json.dumps(info['machine'])}, threads {info['threads']}")
    lines.append(f"load average at start: {info.get('load_average_at_start')}")
    return "\n".join(lines)
