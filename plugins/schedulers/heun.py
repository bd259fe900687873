"""Heun's second-order sampler (Karras et al. 2022, Algorithm 1 without churn; k-diffusion's
sample_heun, "Heun" in the WebUI): an Euler step to the next sigma, a second network call at its
end point, and the step redone with the mean of the two slopes. The step down to sigma = 0 is
Euler only (the slope is undefined there), as in k-diffusion and diffusers: n steps take 2n - 1
network calls."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import euler, schedules
from paddiff.sampling import Sampler

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "clip_sample": False,  # clip the predicted x0 to [-clip_sample_range, clip_sample_range]
    "clip_sample_range": 1.0,
    "timestep_spacing": "linspace",
    "steps_offset": 0,
}


def sample_heun(
    model,
    x,
    sigmas,
    *,
    noise,
    callback,
    start=0,
    clip_sample=False,
    clip_sample_range=1.0,
    **options,
):
    def denoise(x, sigma):
        denoised = model(x, sigma)
        return np.clip(denoised, -clip_sample_range, clip_sample_range) if clip_sample else denoised

    for i in range(start, len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        slope = (x - denoise(x, sigma)) / sigma
        x_euler = x + slope * (sigma_next - sigma)
        if sigma_next == 0:
            x = x_euler
        else:
            slope_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
            x = x + (slope + slope_next) / 2 * (sigma_next - sigma)
        x = callback(i, x)
    return x


HeunDiscreteScheduler = Sampler(
    name="HeunDiscreteScheduler",
    sample=sample_heun,
    schedule=euler.sigma_schedule,
    defaults=DEFAULTS,
    space="ve",
    check=schedules.checker("HeunDiscreteScheduler"),
)
