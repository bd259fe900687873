"""Seconds per image for the embedded default model on this machine's CPU cores.

    python benchmarks/embedded_speed.py [--steps 8] [--runs 15] [--threads 2] [--execution MODE]

Each run is one `text_to_image` call for one image with a prompt not seen before (so the text
encoder runs; the pipeline caches embeddings per prompt), the multistep DPM-Solver++ scheduler,
classifier-free guidance 7.5, and the VAE decode: the whole request a user makes. The first call
(loading, warm-up) is reported separately and not counted in the median.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scheduler", default="DPMSolverMultistepScheduler")
    parser.add_argument("--model", default=None, help="model folder (default: the embedded one)")
    parser.add_argument("--execution", choices=["auto", "static", "dynamic"], default=None)
    args = parser.parse_args(argv)

    import paddle

    paddle.base.core.set_num_threads(args.threads)
    import paddiff
    from paddiff.plugins.embedded import dataset

    started = time.perf_counter()
    pipe = paddiff.load_pipeline(args.model, scheduler=args.scheduler, execution=args.execution)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    combos = dataset.all_combinations()
    prompts = []
    while len(prompts) < args.runs + 1:  # distinct prompts: each run encodes its own text
        shape, fg, bg = combos[rng.integers(len(combos))]
        language = dataset.LANGUAGES[len(prompts) % 2]
        prompt = dataset.random_caption(dataset.Attributes(shape, fg, bg), rng, language)
        if prompt not in prompts:
            prompts.append(prompt)
    times = []
    for i, prompt in enumerate(prompts):
        t0 = time.perf_counter()
        pipe.text_to_image(prompt, steps=args.steps, seed=i, progress=False)
        times.append(time.perf_counter() - t0)
    result = {
        "steps": args.steps,
        "scheduler": args.scheduler,
        "threads": args.threads,
        "execution": args.execution or "default",
        "load_s": round(load_s, 3),
        "first_call_s": round(times[0], 3),
        "median_s": round(float(np.median(times[1:])), 3),
        "min_s": round(float(np.min(times[1:])), 3),
        "max_s": round(float(np.max(times[1:])), 3),
        "runs": args.runs,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
