"""One UNet call in INT8 against paddiff's float32 exported program, same run, and the INT8
model's noise prediction along a 20-step trajectory.

    flock /work/bigmem.lock nice -n 10 .venv/bin/python benchmarks/int8_unet.py MODEL_FOLDER \
        [--latent 32] [--calibration 16] [--rounds 3] [--scheme int8-mixed] [--json OUT]

MODEL_FOLDER is a diffusers-layout model (benchmarks/make_fullsize_sd15.py writes an SD 1.5-size
one with random weights). Inputs: batch 2 (classifier-free guidance), 77 tokens. It times, in
alternating rounds: paddiff's float32 program (what `execution="static"` runs: Paddle Inference
+ oneDNN), the same UNet in OpenVINO float32 (paddiff.quantize.export) and the NNCF INT8 model
(paddiff.quantize.int8). Calibration inputs here are latents at the timesteps of a 20-step
schedule, noised with Gaussian noise; `paddiff quantize` records them from real generations.
Those synthetic inputs do not cover the latents of a real trajectory (on a random-weight model
they grow to 12x the calibration's spread), so the trajectory figures below measure this
calibration, not the tool's: tests/quantize/test_fullsize.py checks the tool's model on a real
trajectory (docs/quantization.md).
Trajectory: a deterministic DDIM-style loop driven by the float OpenVINO model; at each step
the INT8 model predicts on the same input and the cosine similarity and relative error of its
noise prediction are recorded, then the INT8 model runs its own free trajectory to compare the
final latents.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def alphas_cumprod(steps=1000, beta_start=0.00085, beta_end=0.012):
    betas = np.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def unet_inputs(rng, shape, context, timestep, ac):
    """A latent as a sampler sees it at `timestep`: clean-ish latents noised to that level."""
    clean = rng.standard_normal(shape).astype(np.float32) * 0.8
    noise = rng.standard_normal(shape).astype(np.float32)
    a = ac[int(timestep)]
    x = (np.sqrt(a) * clean + np.sqrt(1 - a) * noise).astype(np.float32)
    t = np.full((shape[0],), float(timestep), np.float32)
    c = rng.standard_normal((shape[0], 77, context)).astype(np.float32)
    return [x, t, c]


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def trajectory(float_call, int8_call, x, c, ac, steps=20):
    timesteps = np.linspace(999, 0, steps).round().astype(int)
    per_step = []
    xf, xq = x.copy(), x.copy()
    for i, t in enumerate(timesteps):
        tt = np.full((x.shape[0],), float(t), np.float32)
        ef = float_call([xf, tt, c])
        eq = int8_call([xf, tt, c])  # same input: the error of this one call
        per_step.append(
            {
                "step": i,
                "timestep": int(t),
                "cosine": cosine(eq, ef),
                "relative_error": float(np.linalg.norm(eq - ef) / np.linalg.norm(ef)),
            }
        )
        eq_free = int8_call([xq, tt, c])
        a = ac[t]
        a_next = ac[timesteps[i + 1]] if i + 1 < steps else 1.0
        xf = ddim_step(xf, ef, a, a_next)
        xq = ddim_step(xq, eq_free, a, a_next)
    final = {
        "cosine": cosine(xq, xf),
        "relative_error": float(np.linalg.norm(xq - xf) / np.linalg.norm(xf)),
    }
    return per_step, final


def ddim_step(x, eps, a, a_next):
    x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
    return (np.sqrt(a_next) * x0 + np.sqrt(1 - a_next) * eps).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="calls per side per round")
    parser.add_argument("--scheme", default="int8-mixed")
    parser.add_argument("--json")
    args = parser.parse_args()

    import openvino as ov
    from paddiff.execution import ExportCache
    from paddiff.execution.export import program_files
    from paddiff.execution.predictor import default_threads
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel
    from paddiff.quantize import export, int8

    threads = default_threads()
    work = Path(tempfile.mkdtemp(prefix="paddiff-int8-bench-"))
    unet = UNet2DConditionModel.from_pretrained(Path(args.model) / "unet")
    config = unet.config
    shape = (2, config["in_channels"], args.latent, args.latent)
    rng = np.random.default_rng(0)
    ac = alphas_cumprod()

    start = time.perf_counter()
    cache = ExportCache(work / "cache", threads=threads, precision="fp32")
    network = unet.networks()[0]
    prefix = network.export(cache)
    paddle_export_s = time.perf_counter() - start
    start = time.perf_counter()
    specs = export.unet_specs(config, 2, (args.latent, args.latent))
    float_model, names = export.export_openvino(unet.net, specs, work)
    onnx_export_s = time.perf_counter() - start
    layers = int8.weighted_layers(float_model, names)
    del unet, network
    gc.collect()

    timesteps = np.linspace(999, 0, 20).round()
    samples = [
        unet_inputs(rng, shape, config["cross_attention_dim"], timesteps[i % 20], ac)
        for i in range(args.calibration)
    ]
    start = time.perf_counter()
    int8_model = int8.quantize(float_model, samples, args.scheme, layers)
    quantize_s = time.perf_counter() - start
    ov.save_model(int8_model, str(work / "int8.xml"))
    ov.save_model(float_model, str(work / "f32.xml"), compress_to_fp16=False)
    sizes = {
        "paddle_f32_bytes": program_files(prefix)[1].stat().st_size,
        "openvino_f32_bytes": (work / "f32.bin").stat().st_size,
        "int8_bytes": (work / "int8.bin").stat().st_size,
    }

    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    float_ov = core.compile_model(float_model, "CPU", cfg)
    int8_ov = core.compile_model(int8_model, "CPU", cfg)
    kept = int8.kept_in_float(layers, args.scheme)
    del float_model, int8_model  # memory: the compiled models hold what runs
    gc.collect()
    paddle_f32 = cache.load(prefix)
    sides = {
        "paddiff_f32_program": lambda a: paddle_f32(*a)[0],
        "openvino_f32": lambda a: float_ov(a)[0],
        "openvino_int8": lambda a: int8_ov(a)[0],
    }
    probe = unet_inputs(rng, shape, config["cross_attention_dim"], 500, ac)
    outputs = {name: call(probe) for name, call in sides.items()}  # also the warm-up calls
    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, call in sides.items():
            for _ in range(args.calls):
                start = time.perf_counter()
                call(probe)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}

    x = rng.standard_normal(shape).astype(np.float32)
    c = rng.standard_normal((2, 77, config["cross_attention_dim"])).astype(np.float32)
    per_step, final = trajectory(sides["openvino_f32"], sides["openvino_int8"], x, c, ac)
    report = {
        "shape": list(shape),
        "threads": threads,
        "scheme": args.scheme,
        "calibration_samples": args.calibration,
        "seconds": {
            "paddle_export": paddle_export_s,
            "onnx_openvino_export": onnx_export_s,
            "nncf_quantize": quantize_s,
        },
        "sizes": sizes,
        "median_s": medians,
        "all_s": times,
        "speedup_int8_vs_paddiff_f32": medians["paddiff_f32_program"] / medians["openvino_int8"],
        "openvino_f32_vs_paddiff_f32_max_abs": float(
            np.abs(outputs["openvino_f32"] - outputs["paddiff_f32_program"]).max()
        ),
        "int8_vs_f32_cosine_probe": cosine(outputs["openvino_int8"], outputs["openvino_f32"]),
        "trajectory": per_step,
        "final_latents": final,
        "kept_in_float": kept,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
