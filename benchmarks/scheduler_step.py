"""Scheduler overhead per denoising step: median time of `scale_model_input` + `step` for every
registered scheduler on a 2x4x64x64 float32 latent (a 512x512 image with classifier-free guidance),
with the model output precomputed so only the scheduler is timed.

    python benchmarks/scheduler_step.py [--steps 25] [--repeats 5] [--json]

Prints one row per scheduler: median and 90th-percentile milliseconds per step.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from paddiff import registry
from paddiff.randomness import Generator

SD_CONFIG = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "clip_sample": False,
}
SHAPE = (2, 4, 64, 64)


def time_scheduler(cls, steps: int, repeats: int) -> list[float]:
    rng = Generator(0)
    model_output = rng.randn(SHAPE) * np.float32(0.1)
    per_step = []
    for _ in range(repeats):
        scheduler = cls.from_config(SD_CONFIG)
        scheduler.set_timesteps(steps)
        sample = rng.randn(SHAPE) * np.float32(scheduler.init_noise_sigma)
        generator = Generator(1)
        for t in scheduler.timesteps:
            start = time.perf_counter()
            scheduler.scale_model_input(sample, t)
            sample = scheduler.step(model_output, t, sample, generator=generator).prev_sample
            per_step.append(time.perf_counter() - start)
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reg = registry.default_registry()
    rows = []
    for name in reg.names("schedulers"):
        times = np.array(time_scheduler(reg.get("schedulers", name), args.steps, args.repeats))
        rows.append(
            {
                "scheduler": name,
                "median_ms": round(float(np.median(times)) * 1e3, 3),
                "p90_ms": round(float(np.percentile(times, 90)) * 1e3, 3),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"# {platform.processor() or platform.machine()}, numpy {np.__version__}, "
        f"latent {'x'.join(map(str, SHAPE))} float32, {args.steps} steps x {args.repeats}"
    )
    print(f"{'scheduler':34} {'median ms':>10} {'p90 ms':>8}")
    for row in rows:
        print(f"{row['scheduler']:34} {row['median_ms']:>10.3f} {row['p90_ms']:>8.3f}")


if __name__ == "__main__":
    main()
