"""Euler sampler (Karras et al. 2022, Algorithm 2 without churn): one network call per step,
following the probability-flow ODE dx/dsigma = (x - x0) / sigma."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.sampling import Sampler, Schedule

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "sigma_min": None,
    "sigma_max": None,
    "timestep_spacing": "linspace",
    "timestep_type": "discrete",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
    "final_sigmas_type": "zero",
}


def sigma_schedule(config: dict, steps: int, final_sigma: float | None = None) -> Schedule:
    """The k-diffusion-style schedule: spaced sigmas, then the final one (0, or the smallest
    training sigma with final_sigmas_type="sigma_min")."""
    train = schedules.train_sigmas_for(config)
    timesteps, sigmas = schedules.ve_sigmas(config, steps, train)
    if final_sigma is None:
        final_sigma = train[0] if config.get("final_sigmas_type") == "sigma_min" else 0.0
    sigmas = np.append(sigmas, final_sigma).astype(np.float32)
    return Schedule(
        sigmas=sigmas,
        timesteps=timesteps.astype(np.float32),
        init_sigma=schedules.ve_init_sigma(config, sigmas),
        train_sigmas=train,
    )


def sample_euler(model, x, sigmas, *, noise, callback, start=0, **options):
    for i in range(start, len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        slope = (x - denoised) / sigmas[i]
        x = callback(i, x + slope * (sigmas[i + 1] - sigmas[i]))
    return x


EulerDiscreteScheduler = Sampler(
    name="EulerDiscreteScheduler",
    sample=sample_euler,
    schedule=sigma_schedule,
    defaults=DEFAULTS,
    space="ve",
    check=schedules.checker(
        "EulerDiscreteScheduler",
        {"interpolation_type": ("linear",), "timestep_type": ("discrete",)},
    ),
)
