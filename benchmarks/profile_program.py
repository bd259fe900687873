"""Time one exported program with Paddle Inference, count its page faults, and list its ops.

    python benchmarks/profile_program.py PREFIX --inputs 2x4x32x32 2 2x77x768 [--runs 8]
        [--profile] [--bf16] [--no-heap-reuse]

PREFIX is a program in paddiff's export cache, e.g.
`~/.cache/paddiff/exported/<model key>/unet-Nx4xNxN_N_NxNx768/program` (what `paddiff export`
or a first static run writes). Inputs are random float32 arrays of the given shapes, in the
program's input order (append `:int64` for token ids, e.g. `2x77:int64`). It prints the median
time of `--runs` calls after one warm-up call and the minor page faults per call; `--profile`
adds Paddle's per-op table (printed by Paddle at exit; its totals include the warm-up call, so
compare two runs with different `--runs` for per-call figures; Paddle also writes a binary
`profile.log` into the current folder). How these were used:
docs/performance.md, "Paddle Inference configuration".
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
from paddiff.execution.heap import reusing_heap
from paddiff.execution.predictor import default_threads, onednn_shapes


def parse_input(text: str, rng: np.random.Generator) -> np.ndarray:
    shape_text, _, dtype = text.partition(":")
    shape = [int(d) for d in shape_text.split("x")]
    if dtype == "int64":
        return rng.integers(0, 1000, size=shape).astype(np.int64)
    return rng.standard_normal(shape, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("prefix", help="exported program without suffix (…/program)")
    parser.add_argument("--inputs", nargs="+", required=True, help="shapes such as 2x4x32x32")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="Paddle's per-op table")
    parser.add_argument("--bf16", action="store_true", help="enable_onednn_bfloat16")
    parser.add_argument(
        "--no-heap-reuse", action="store_true", help="run without paddiff's heap reuse"
    )
    args = parser.parse_args()

    from paddle import inference

    config = inference.Config(args.prefix + ".json", args.prefix + ".pdiparams")
    config.disable_glog_info()
    config.switch_ir_optim(True)
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(default_threads())
    config.enable_onednn()
    config.set_onednn_cache_capacity(onednn_shapes())
    if args.bf16:
        config.enable_onednn_bfloat16()
    if args.profile:
        config.enable_profile()
    predictor = inference.create_predictor(config)
    rng = np.random.default_rng(0)
    arrays = [parse_input(text, rng) for text in args.inputs]

    def call():
        for name, array in zip(predictor.get_input_names(), arrays, strict=True):
            handle = predictor.get_input_handle(name)
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        if args.no_heap_reuse:
            predictor.run()
        else:
            with reusing_heap():
                predictor.run()

    start = time.perf_counter()
    call()
    print(f"first call {time.perf_counter() - start:.2f} s", flush=True)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.runs
    print(
        f"median {statistics.median(times):.3f} s over {args.runs} calls "
        f"({', '.join(f'{t:.3f}' for t in times)}); {faults:.0f} minor page faults per call",
        flush=True,
    )


if __name__ == "__main__":
    main()
