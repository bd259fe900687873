"""What bf16 does to an image: one `paddiff generate` per (runtime, precision), same prompt and
seed, and the PSNR of each image against Paddle Inference's f32 image.

    flock /work/bigmem.lock python benchmarks/performance/unet_call_images.py MODEL_FOLDER \
        [--steps 10] [--size 256] [--cache DIR] [--out images.json]

MODEL_FOLDER is a diffusers folder (benchmarks/make_fullsize_sd15.py writes an SD 1.5-size one
with random weights). Each run is a process of its own with `--execution static`, so every
network (text encoder, UNet, VAE decoder) runs on the back end and precision named.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RUNS = [("paddle-inference", "fp32"), ("paddle-inference", "bf16"), ("openvino", "fp32"),
        ("openvino", "bf16")]  # fmt: skip


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--out", type=Path, default=Path("images.json"))
    args = parser.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="paddiff-images-")
    folder = Path(tempfile.mkdtemp(prefix="paddiff-images-out-"))
    paddiff = Path(sys.executable).with_name("paddiff")
    images, seconds = {}, {}
    for runtime, precision in RUNS:
        out = folder / f"{runtime}-{precision}.png"
        command = [str(paddiff), "generate", "a photograph of an astronaut riding a horse"]
        command += ["--model", str(args.model), "--seed", "1", "--steps", str(args.steps)]
        command += ["--width", str(args.size), "--height", str(args.size), "--no-progress"]
        command += ["--execution", "static", "--runtime", runtime, "--precision", precision]
        command += ["-o", str(out)]
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PADDIFF_CACHE_DIR": cache})
        seconds[f"{runtime} {precision}"] = time.perf_counter() - start
        images[f"{runtime} {precision}"] = np.asarray(Image.open(out).convert("RGB"))
        print(f"{runtime} {precision}: {seconds[f'{runtime} {precision}']:.1f} s", flush=True)
    reference = images["paddle-inference fp32"]
    results = {
        key: {
            "process_s": seconds[key],
            "psnr_vs_paddle_inference_fp32_db": psnr(image, reference),
            "max_abs_pixel_diff": int(np.abs(image.astype(int) - reference.astype(int)).max()),
        }
        for key, image in images.items()
    }
    for runtime in ("paddle-inference", "openvino"):  # bf16 against the same back end's f32
        own = images[f"{runtime} fp32"]
        results[f"{runtime} bf16"]["psnr_vs_own_fp32_db"] = psnr(images[f"{runtime} bf16"], own)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
