"""How much one OpenVINO-compiled network holds: peak and resident memory of compiling an IR for
one UNet shape and calling it three times, with the IR's mapped pages kept, released after the
compile, or released while compiling (what paddiff's OpenVINO back end does); docs/performance.md,
"One copy of the weights with OpenVINO".

    flock /work/bigmem.lock python benchmarks/performance/openvino_weight_memory.py \\
        CACHE/<key>/unet-...-portable/program.openvino.xml f32 {keep,after,during}

A float16 IR for the bf16 rows: `python -m paddiff.plugins.runtimes.openvino_convert PREFIX
--float16-weights`. Inputs: a UNet's (2x4x32x32 latents, 2 timesteps, 2x77x768 text).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np


def resident_gb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1e6


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    import openvino as ov
    from paddiff.plugins.runtimes import mapped_pages

    ir, precision, release = sys.argv[1], sys.argv[2], sys.argv[3]
    weights = ir[: -len(".xml")] + ".bin"
    core = ov.Core()
    model = core.read_model(ir)
    shapes = [[2, 4, 32, 32], [2], [2, 77, 768]]
    model.reshape({port: shape for port, shape in zip(model.inputs, shapes, strict=True)})
    config = {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": precision}
    began = time.perf_counter()
    if release == "during":
        with mapped_pages.released_while(weights):
            compiled = core.compile_model(model, "CPU", config)
    else:
        compiled = core.compile_model(model, "CPU", config)
    print(f"compiled in {time.perf_counter() - began:.1f} s: peak {peak_gb():.2f} GB")
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    inputs = [
        rng.standard_normal(shapes[0]).astype(np.float32),
        np.array([500.0, 500.0], np.float32),
        rng.standard_normal(shapes[2]).astype(np.float32),
    ]
    request.infer(inputs)
    first = np.array(request.get_output_tensor(0).data, copy=True)
    if release == "after":
        released = mapped_pages.release(weights) / 1e9
        print(f"released {released:.2f} GB of mapped pages: resident {resident_gb():.2f} GB")
    for _ in range(2):
        request.infer(inputs)
    last = np.array(request.get_output_tensor(0).data, copy=True)
    print(
        f"after 3 calls: resident {resident_gb():.2f} GB, peak {peak_gb():.2f} GB, "
        f"outputs of the first and last call equal: {np.array_equal(first, last)}"
    )


if __name__ == "__main__":
    main()
