"""A `paddiff quantize` folder's noise prediction against its float model's, at every step of a
real generation (what tests/quantize/test_fullsize.py asserts, with the figures printed).

    PADDIFF_CACHE_DIR=CACHE flock /work/bigmem.lock python benchmarks/int8_trajectory.py \
        FLOAT_MODEL INT8_FOLDER "一只猫" [--steps 20] [--size 256] [--seed 5]

The float pipeline generates once while its UNet inputs are recorded
(paddiff.quantize.calibration); then the float and the INT8 UNet run on each recorded input.
Prints one JSON line per UNet call (timestep, cosine, relative error, the latents' standard
deviation) and the smallest cosine. Use a prompt and seed outside the calibration list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_model", type=Path)
    parser.add_argument("int8_folder", type=Path)
    parser.add_argument("prompt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    import paddiff
    from paddiff.quantize.calibration import record_unet_inputs

    float_pipe = paddiff.load_pipeline(args.float_model)
    calls = record_unet_inputs(
        float_pipe, [args.prompt], steps=args.steps, height=args.size, width=args.size,
        seed=args.seed,
    )  # fmt: skip
    float_unet = float_pipe.denoiser
    del float_pipe  # its VAE and text encoder: the INT8 folder brings its own
    int8_unet = paddiff.load_pipeline(args.int8_folder).denoiser
    cosines = []
    for latents, timestep, context in calls:
        want = np.asarray(float_unet(latents, timestep, context), np.float64)
        got = np.asarray(int8_unet(latents, timestep, context), np.float64)
        cosine = float((want * got).sum() / (np.linalg.norm(want) * np.linalg.norm(got)))
        cosines.append(cosine)
        row = {
            "timestep": int(np.asarray(timestep).ravel()[0]),
            "cosine": round(cosine, 5),
            "relative_error": round(float(np.linalg.norm(got - want) / np.linalg.norm(want)), 4),
            "latent_std": round(float(np.asarray(latents).std()), 3),
        }
        print(json.dumps(row), flush=True)
    print(json.dumps({"calls": len(cosines), "min_cosine": round(min(cosines), 5)}))


if __name__ == "__main__":
    main()
