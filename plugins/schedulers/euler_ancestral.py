"""Euler ancestral sampler (k-diffusion's sample_euler_ancestral; "Euler a" in the WebUI): an
Euler step of the probability-flow ODE (Karras et al. 2022, eq. 3) down to sigma_down, then fresh
noise of size sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2 (eta = 1), which makes
each step a sample of the reverse SDE (Song et al. 2021, "Score-Based Generative Modeling")."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import euler, schedules
from paddiff.sampling import Sampler

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "timestep_spacing": "linspace",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}


def ancestral_step(sigma, sigma_next):
    """(sigma_down, sigma_up) of a step from sigma to sigma_next (k-diffusion's
    get_ancestral_step, eta = 1): up^2 = next^2 (sigma^2 - next^2) / sigma^2 and
    down^2 = next^2 - up^2 = next^4 / sigma^2. Written so that nothing cancels (diffusers
    subtracts, which rounds below 0, hence NaN, at the cosine schedule's sigma_max of 2e4)."""
    sigma_up = sigma_next * np.sqrt(sigma**2 - sigma_next**2) / sigma
    return sigma_next**2 / sigma, sigma_up


def sample_euler_ancestral(model, x, sigmas, *, noise, callback, start=0, **options):
    for i in range(start, len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + (x - denoised) / sigmas[i] * (sigma_down - sigmas[i])
        x = callback(i, x + noise(x.shape) * sigma_up)
    return x


EulerAncestralDiscreteScheduler = Sampler(
    name="EulerAncestralDiscreteScheduler",
    sample=sample_euler_ancestral,
    schedule=euler.sigma_schedule,
    defaults=DEFAULTS,
    space="ve",
    check=schedules.checker(
        "EulerAncestralDiscreteScheduler", prediction_types=("epsilon", "v_prediction")
    ),
)
