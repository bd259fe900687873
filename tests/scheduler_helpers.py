"""Shared by the scheduler tests: the stand-in model, the denoising loop, the parity fixtures."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "schedulers"

#: Stable Diffusion 1.5's scheduler_config.json (a model folder's file, unknown keys included).
SD_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def stand_in_model(sample: np.ndarray, t: float) -> np.ndarray:
    """A smooth, deterministic fake denoiser output; the same function make_reference.py uses."""
    x = np.asarray(sample).astype(np.float64)
    return (0.3 * x * math.cos(t / 200) + 0.1 * np.sin(x + t / 1000)).astype(np.float32)


def denoise(scheduler, sample, generator=None, model=stand_in_model, on_step=None):
    """The pipeline's loop, with `model` in place of the denoiser: scale, predict, step."""
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(sample, t)
        sample = scheduler.step(model(model_input, float(t)), t, sample, generator=generator)
        sample = sample.prev_sample
        if on_step is not None:
            on_step(i, t, sample)
    return sample


@cache
def reference(class_name: str):
    """(arrays, manifest) recorded from diffusers for one scheduler class."""
    data = np.load(FIXTURES / f"{class_name}.npz")
    arrays = {key: data[key] for key in data.files}
    return arrays, json.loads(str(arrays.pop("__cases__")))


def reference_classes() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.npz"))
