"""One side of benchmarks/performance/unet_call.py, in a process of its own: load, warm up, time.

    python unet_call_worker.py MODEL SIDE PRECISION --calls N --out RESULT.json [--cache DIR]

SIDE is `paddiff:<runtime>` (the UNet through paddiff's own API: the denoiser plugin, run by
`set_execution(..., runtime=...)`) or `anchor:openvino` / `anchor:onnxruntime` (diffusers' UNet
exported to ONNX by unet_call_anchor_model.py). Writes the timings and saves the output of the
timed input next to RESULT (RESULT.npy) for the accuracy figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def paddiff_side(model: Path, runtime: str, precision: str, cache: str, threads: int):
    from paddiff.execution import set_execution
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    set_execution(unet, "static", cache_dir=cache, precision=precision, runtime=runtime)
    return lambda sample, timestep, context: unet(sample, timestep, context)


def openvino_anchor(model: Path, precision: str, threads: int):
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(core.read_model(str(model / "unet.onnx")), "CPU", config)
    request = compiled.create_infer_request()

    def call(*arrays):
        request.infer(list(arrays))
        return np.array(request.get_output_tensor(0).data, copy=True)

    return call


def onnxruntime_anchor(model: Path, precision: str, threads: int):
    import onnxruntime as ort

    if precision != "fp32":
        raise SystemExit("ONNX Runtime's CPU provider runs this model in fp32 only")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model / "unet.onnx"), options)
    names = [i.name for i in session.get_inputs()]
    return lambda *arrays: session.run(None, dict(zip(names, arrays, strict=True)))[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("side")
    parser.add_argument("precision", choices=("fp32", "bf16"))
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    inputs = np.load(args.model / "inputs.npz")
    arrays = (inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"])
    kind, _, name = args.side.partition(":")
    start = time.perf_counter()
    if kind == "paddiff":
        call = paddiff_side(args.model, name, args.precision, args.cache, args.threads)
    elif name == "openvino":
        call = openvino_anchor(args.model, args.precision, args.threads)
    else:
        call = onnxruntime_anchor(args.model, args.precision, args.threads)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    output = call(*arrays)  # paddiff's first call exports / converts / compiles if needed
    first = time.perf_counter() - start
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        output = call(*arrays)
        times.append(time.perf_counter() - start)
    np.save(args.out.with_suffix(".npy"), np.asarray(output, dtype=np.float32))
    result = {
        "side": args.side,
        "precision": args.precision,
        "load_s": loaded,
        "first_call_s": first,
        "times_s": times,
        "median_s": float(np.median(times)),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
