"""OpenVINO's compiled-model cache on one converted UNet: compile (or import) time, first and
second call, RSS and peak RSS, for one process (docs/performance.md, "One image, one process").

    python benchmarks/performance/openvino_model_cache.py IR.xml CACHE_DIR [f32|bf16]

Run it twice with the same CACHE_DIR: the first process compiles and writes the cache, the
second imports it. IR.xml is a program the OpenVINO back end converted (`program.openvino.xml`
in paddiff's export cache); inputs are SD 1.5-shaped (2x4x32x32, 2, 2x77x768).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np


def rss_gb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 2**20 for line in status if line.startswith("VmRSS"))


def main() -> None:
    import openvino as ov

    ir, cache = sys.argv[1], sys.argv[2]
    precision = sys.argv[3] if len(sys.argv) > 3 else "f32"
    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": 2,
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "CACHE_DIR": cache,
    }
    start = time.perf_counter()
    model = core.read_model(ir)
    model.reshape(dict(zip(model.inputs, [[2, 4, 32, 32], [2], [2, 77, 768]], strict=True)))
    compiled = core.compile_model(model, "CPU", config)
    del model
    compile_s = time.perf_counter() - start
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    inputs = [
        rng.standard_normal((2, 4, 32, 32), dtype=np.float32),
        np.array([500, 500], np.float32),
        rng.standard_normal((2, 77, 768), dtype=np.float32),
    ]
    calls = []
    for _ in range(2):
        start = time.perf_counter()
        request.infer(inputs)
        calls.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{precision}: compile/import {compile_s:.1f} s, first call {calls[0]:.2f} s, second "
        f"{calls[1]:.2f} s, RSS {rss_gb():.2f} GB, peak {peak:.2f} GB"
    )


if __name__ == "__main__":
    main()
