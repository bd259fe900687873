"""Shared by the scheduler tests: the stand-in model, the denoising loop, the parity fixtures."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np

from support.fixture_configs import SD_CONFIG, stand_in_model  # shared with make_reference.py

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schedulers"

#: Other model folders' scheduler_config.json files, as published (SD 2.1 768-v, SDXL base,
#: an LCM-distilled SD 1.5).
MODEL_CONFIGS = {
    "sd15": SD_CONFIG,
    "sd21-v": {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.8.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
    },
    "sdxl": {
        "_class_name": "EulerDiscreteScheduler",
        "_diffusers_version": "0.19.0.dev0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "sample_max_value": 1.0,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
        "use_karras_sigmas": False,
    },
    "lcm": {
        "_class_name": "LCMScheduler",
        "_diffusers_version": "0.22.0.dev0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "dynamic_thresholding_ratio": 0.995,
        "num_train_timesteps": 1000,
        "original_inference_steps": 50,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 1,
        "thresholding": False,
        "timestep_scaling": 10.0,
        "timestep_spacing": "leading",
        "trained_betas": None,
    },
}


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


_SD_ABAR = np.cumprod(1 - np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2)


def gaussian_data_denoiser(model_input: np.ndarray, t: float) -> np.ndarray:
    """The exact noise prediction for data drawn from N(0, I) on SD's schedule: the VP input
    x_t = alpha x0 + s eps has unit variance, and E[eps | x_t] = s * x_t."""
    s = math.sqrt(1 - np.interp(t, np.arange(1000), _SD_ABAR))
    return (s * np.asarray(model_input, dtype=np.float64)).astype(np.float32)


_SD_SIGMAS = np.sqrt((1 - _SD_ABAR) / _SD_ABAR)


def point_mass_denoiser(clean: np.ndarray):
    """The exact noise prediction when all data is the single sample `clean`: from the VP input
    x_t = alpha x0 + s eps, eps = (x_t - alpha * clean) / s, with the noise level at t taken as
    the schedulers take it (sigma interpolated linearly between training steps)."""

    def model(model_input: np.ndarray, t: float) -> np.ndarray:
        sigma = np.interp(t, np.arange(1000), _SD_SIGMAS)
        alpha = 1 / math.sqrt(sigma**2 + 1)
        eps = (np.asarray(model_input, np.float64) - alpha * clean) / (sigma * alpha)
        return eps.astype(np.float32)

    return model


def make_sampler(entry, config: dict):
    """What the registry entry makes from a config: a ConfiguredSampler (function form) or a
    protocol scheduler instance; both go through paddiff.sampling.plan_sampling."""
    return entry.from_config(config)


class RecordingNetwork:
    """A stand-in network(x_in, t) that records the timesteps it was called at."""

    def __init__(self, model=stand_in_model):
        self.model = model
        self.timesteps: list[float] = []

    def __call__(self, x_in, t):
        self.timesteps.append(float(t))
        return self.model(np.asarray(x_in, dtype=np.float32), float(t))


def run_sampler(
    scheduler,
    steps,
    init,
    noise=None,
    network=None,
    strength=1.0,
    on_step=None,
    image=None,
    prediction_type=None,
):
    """The pipeline's sampling path with a stand-in network: plan, start latents, sample.
    `init` is the initial noise (or, with `image`, the noise added to it). Returns (final
    latents, plan, network)."""
    from paddiff.sampling import plan_sampling

    network = network or RecordingNetwork()
    plan = plan_sampling(scheduler, steps, strength)
    if image is None:
        x = plan.initial(np.asarray(init, dtype=np.float32))
    else:
        x = plan.noised(image, np.asarray(init, dtype=np.float32), plan.start)

    def callback(i, x):
        if on_step is not None:
            on_step(i, x)
        return x

    prediction_type = prediction_type or scheduler.config.get("prediction_type", "epsilon")
    noise = noise if noise is not None else _default_noise(init)
    x = plan.sample(network, prediction_type, x, noise=noise, callback=callback)
    return x, plan, network


def _default_noise(init):
    from paddiff.randomness import BatchNoise, Generator

    return BatchNoise([Generator(i) for i in range(np.shape(init)[0])])


def final_sigma(plan) -> float:
    """The noise level a run ends at (0 for most samplers; DEIS and PNDM stop just above)."""
    schedule = getattr(plan, "schedule", None)
    if schedule is not None:
        return float(schedule.sigmas[-1])
    return float(getattr(plan.scheduler, "sigmas", np.zeros(1))[-1])
