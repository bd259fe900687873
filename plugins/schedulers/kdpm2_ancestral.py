"""Ancestral DPM-Solver-2 (k-diffusion's sample_dpm_2_ancestral, "DPM2 a" in the WebUI): the
DPM2 step (see kdpm2.py) aims at sigma_down instead of the next sigma, through the geometric
midpoint of sigma and sigma_down, then adds fresh noise of size sigma_up, as Euler a does
(euler_ancestral.py). The step down to sigma = 0 is Euler only and draws no noise, as in
diffusers: n steps take 2n - 1 network calls and n - 1 noise draws."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import kdpm2, schedules
from paddiff.plugins.schedulers.euler_ancestral import ancestral_step
from paddiff.sampling import Sampler, Schedule

DEFAULTS = kdpm2.DEFAULTS


def midpoints(sigmas: np.ndarray) -> np.ndarray:
    """The geometric midpoint of each step's sigma and sigma_down (0 for the last step).
    With sigma_down = next^2 / sigma it equals the next sigma up to rounding; it is computed
    as diffusers computes it, so the network sees diffusers' midpoint timesteps."""
    with np.errstate(divide="ignore", invalid="ignore"):  # the final 0 / 0 is not used
        sigma_down, _ = ancestral_step(sigmas[:-1], sigmas[1:])
    middle = kdpm2.geometric_midpoints(sigmas[:-1], sigma_down)
    middle[-1] = 0.0
    return middle


def dpm2_ancestral_schedule(config: dict, steps: int) -> Schedule:
    return kdpm2.midpoint_schedule(config, steps, midpoints)


def sample_dpm_2_ancestral(
    model, x, sigmas, *, noise, callback, midpoints, midpoint_timesteps, start=0, **options
):
    for i in range(start, len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next == 0:  # the last step: Euler, no noise
            x = kdpm2.dpm2_step(model, x, sigma, None, None, sigma_next)
        else:
            sigma_down, sigma_up = ancestral_step(sigma, sigma_next)
            x = kdpm2.dpm2_step(model, x, sigma, midpoints[i], midpoint_timesteps[i], sigma_down)
            x = x + noise(x.shape) * sigma_up
        x = callback(i, x)
    return x


KDPM2AncestralDiscreteScheduler = Sampler(
    name="KDPM2AncestralDiscreteScheduler",
    sample=sample_dpm_2_ancestral,
    schedule=dpm2_ancestral_schedule,
    defaults=DEFAULTS,
    space="ve",
    check=schedules.checker(
        "KDPM2AncestralDiscreteScheduler", prediction_types=("epsilon", "v_prediction")
    ),
)
