"""DPM-Solver-2 in sigma (k-diffusion's sample_dpm_2, "DPM2" in the WebUI; Lu et al. 2022,
"DPM-Solver", Algorithm 1 with r = 1/2, as adapted by Karras et al. 2022): an Euler half step to
the geometric midpoint sigma_mid = sqrt(sigma * sigma_next), a network call there, and the whole
step taken with the midpoint's slope. The step down to sigma = 0 is Euler only, as in
k-diffusion and diffusers: n steps take 2n - 1 network calls."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.sampling import Sampler, Schedule

F32 = np.float32

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "timestep_spacing": "linspace",
    "steps_offset": 0,
}


def geometric_midpoints(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """exp((log a + log b) / 2) in float32, as diffusers computes it; zero where either is zero."""
    with np.errstate(divide="ignore"):
        return np.exp((np.log(a) + np.log(b)) / F32(2)).astype(F32)


def step_sigmas(config: dict, steps: int):
    """(timesteps, sigmas, train sigmas): n float32 timesteps and n + 1 sigmas ending in 0.
    diffusers' DPM2 rounds the timesteps of Karras sigmas to whole ones."""
    train = schedules.train_sigmas_for(config)
    timesteps, sigmas = schedules.ve_sigmas(config, steps, train)
    if config["use_karras_sigmas"]:
        timesteps = timesteps.round()
    return timesteps.astype(F32), np.append(sigmas, 0.0).astype(F32), train


def midpoint_schedule(config: dict, steps: int, midpoints) -> Schedule:
    """The step sigmas, with midpoints(sigmas) (one per step, 0 for the last step, which makes
    no midpoint call) passed to the sampler and mapped to their network timesteps."""
    timesteps, sigmas, train = step_sigmas(config, steps)
    middle = midpoints(sigmas)
    called = middle[:-1]  # the last step is Euler only
    return Schedule(
        sigmas=sigmas,
        timesteps=timesteps,
        init_sigma=schedules.ve_init_sigma(config, sigmas),
        train_sigmas=train,
        extra={
            "midpoints": middle,
            "midpoint_timesteps": schedules.sigma_to_timestep(called, train).astype(F32),
        },
    )


def dpm2_schedule(config: dict, steps: int) -> Schedule:
    return midpoint_schedule(config, steps, lambda s: geometric_midpoints(s[:-1], s[1:]))


def dpm2_step(model, x, sigma, sigma_mid, t_mid, sigma_to):
    """One DPM2 step from sigma towards sigma_to: an Euler half step to the midpoint, a network
    call there, and the whole step with the midpoint's slope. To sigma_to = 0 it is an Euler
    step (no midpoint exists), as in diffusers."""
    slope = (x - model(x, sigma)) / sigma
    if sigma_to == 0:
        return x + slope * (sigma_to - sigma)
    x_mid = x + slope * (sigma_mid - sigma)
    slope_mid = (x_mid - model(x_mid, sigma_mid, t_mid)) / sigma_mid
    return x + slope_mid * (sigma_to - sigma)


def sample_dpm_2(
    model, x, sigmas, *, noise, callback, midpoints, midpoint_timesteps, start=0, **options
):
    for i in range(start, len(sigmas) - 1):
        t_mid = midpoint_timesteps[i] if sigmas[i + 1] else None
        x = dpm2_step(model, x, sigmas[i], midpoints[i], t_mid, sigmas[i + 1])
        x = callback(i, x)
    return x


KDPM2DiscreteScheduler = Sampler(
    name="KDPM2DiscreteScheduler",
    sample=sample_dpm_2,
    schedule=dpm2_schedule,
    defaults=DEFAULTS,
    space="ve",
    check=schedules.checker("KDPM2DiscreteScheduler", prediction_types=("epsilon", "v_prediction")),
)
