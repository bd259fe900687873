"""Sampler overhead per denoising step: for every registered scheduler, the time between two
steps of a run through `paddiff.sampling.plan_sampling` (the pipeline's path: the x0-denoiser's
scaling and prediction-type conversion, and the sampler's update) on a 2x4x64x64 float32 latent
(a 512x512 image with classifier-free guidance), with a network that returns a precomputed
output, so only the sampling machinery is timed.

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
from paddiff.sampling import plan_sampling

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


def time_scheduler(entry, steps: int, repeats: int) -> list[float]:
    rng = Generator(0)
    model_output = rng.randn(SHAPE) * np.float32(0.1)
    per_step = []
    for _ in range(repeats):
        plan = plan_sampling(entry.from_config(SD_CONFIG), steps)
        marks = [time.perf_counter()]
        plan.sample(
            lambda x_in, t: model_output,
            "epsilon",
            plan.initial(rng.randn(SHAPE)),
            noise=Generator(1),
            callback=lambda i, x, marks=marks: marks.append(time.perf_counter()) or x,
        )
        per_step.extend(np.diff(marks))
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
