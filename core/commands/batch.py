"""`paddiff batch JOBS.jsonl --out DIR`: a job file of many generations, resumable, exactly once
(see paddiff.batch and docs/batch.md)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("jobs", help="job file: one JSON object per line (see docs/batch.md)")
    parser.add_argument(
        "--out", required=True, help="output folder: images/, metadata.jsonl, errors.jsonl"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes on this machine, each with its share of the cores (default 1); with "
        "--ray, the number of pipeline actors",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help='run on a Ray cluster: its address (host:port), or "auto" for the one this machine '
        "belongs to (needs `pip install paddiff[ray]`)",
    )
    parser.add_argument(
        "--num-cpus", type=float, default=None, help="with --ray: CPUs per actor (default 1)"
    )
    parser.add_argument(
        "--num-gpus", type=float, default=0, help="with --ray: GPUs per actor (default 0)"
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=4,
        help="images of one job per task (default 4); a kill loses at most one task per worker",
    )
    parser.add_argument(
        "--safety-config",
        help="JSON file configuring the safety filters (see docs/safety.md); default: the "
        "shipped prompt term lists plus the model's own image checker if it has one",
    )
    parser.add_argument(
        "--execution",
        choices=("auto", "static", "dynamic"),
        help="execution mode (see docs/performance.md); default auto or $PADDIFF_EXECUTION",
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="default fp32")
    parser.add_argument(
        "--lora-dir",
        default=None,
        help='where a job\'s LoRA {"name": NAME} is looked up (default $PADDIFF_LORA_DIR)',
    )
    parser.add_argument(
        "--controlnet-dir",
        default=None,
        help='where a job\'s control net {"name": NAME} is looked up (default '
        "$PADDIFF_CONTROLNET_DIR)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args) -> int:
    from paddiff import batch

    jobs, out = Path(args.jobs), Path(args.out)
    if not jobs.is_file():
        print(f"paddiff: error: job file not found: {jobs}", file=sys.stderr)
        return 1
    if args.workers < 1 or args.chunk < 1:
        print("paddiff: error: --workers and --chunk must be at least 1", file=sys.stderr)
        return 1
    if out.exists() and not out.is_dir():
        print(f"paddiff: error: --out {out} is a file, not a folder", file=sys.stderr)
        return 1
    loader_options = {
        name: getattr(args, name)
        for name in ("execution", "precision")
        if getattr(args, name) is not None
    }
    runner_options = {
        "out": str(out.resolve()),
        "safety_config": args.safety_config,
        "loader_options": loader_options,
    }
    if args.ray:
        try:
            from paddiff import batch_ray
        except ImportError as exc:
            print(f"paddiff: error: {exc}", file=sys.stderr)
            return 1
        execute = batch_ray.run_ray(
            args.ray, args.workers, runner_options, args.num_cpus, args.num_gpus
        )
    elif args.workers > 1:
        execute = batch.run_local(args.workers, runner_options)
    else:
        execute = batch.run_here(batch.TaskRunner(**runner_options))
    try:
        summary = batch.run_batch(
            jobs,
            out,
            execute,
            args.chunk,
            not args.no_progress,
            lora_dir=args.lora_dir,
            controlnet_dir=args.controlnet_dir,
        )
    except (ValueError, OSError) as exc:  # an unreadable job file, an unwritable --out
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    print(summary.text(out))
    complete = summary.total == summary.already_done + summary.written
    return 0 if complete and not summary.bad_lines and not summary.failed_jobs else 1
