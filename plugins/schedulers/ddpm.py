"""DDPM ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 6-7):
each step draws x' from the Gaussian posterior q(x' | x, x0) given the predicted x0, for the
next timestep of the schedule (the skipped training steps combined into one)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.thresholding import CLIP_DEFAULTS, clip_or_threshold
from paddiff.sampling import Sampler

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    **CLIP_DEFAULTS,
    # the noise's variance: the posterior's (fixed_small, and fixed_small_log, its log-space
    # form, is sampled alike) or beta_t (fixed_large) (Ho et al. sec. 3.2)
    "variance_type": "fixed_small",
    "timestep_spacing": "leading",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}


def ddpm_schedule(config: dict, steps: int):
    """The config's spacing rounded to training timesteps, ending on a clean sample. Ho et al.'s
    Algorithm 2 adds no noise on the step from the first training timestep (t = 0 here); a run
    ending on another timestep (steps_offset = 1) draws noise there too, as diffusers does, so
    `adds_noise` says which steps draw."""
    schedules.check_steps(config, steps)
    spaced = schedules.spaced_timesteps(
        config["timestep_spacing"], steps, config["num_train_timesteps"], config["steps_offset"]
    )
    timesteps = np.round(spaced).astype(np.int64)
    return schedules.vp_schedule(config, timesteps, 1.0, adds_noise=timesteps > 0)


def sample_ddpm(
    model, x, sigmas, *, noise, callback, start=0, adds_noise, variance_type, **options
):
    for i in range(start, len(sigmas) - 1):
        x0 = clip_or_threshold(model(x, sigmas[i]), options)
        # in abar, with diffusers' float32 order (see schedules.abar_of_sigma)
        abar, abar_to = schedules.abar_of_sigma(sigmas[i]), schedules.abar_of_sigma(sigmas[i + 1])
        alpha = abar / abar_to  # of the training steps this step spans, combined
        beta = 1 - alpha
        # the posterior mean (eq. 7)
        x = (abar_to**0.5 * beta) / (1 - abar) * x0 + alpha**0.5 * (1 - abar_to) / (1 - abar) * x
        if adds_noise[i]:
            if variance_type == "fixed_large":
                variance = beta
            else:  # the posterior's variance, floored as diffusers floors it
                variance = np.maximum((1 - abar_to) / (1 - abar) * beta, np.float32(1e-20))
            x = x + variance**0.5 * noise(x.shape)
        x = callback(i, x)
    return x


DDPMScheduler = Sampler(
    name="DDPMScheduler",
    sample=sample_ddpm,
    schedule=ddpm_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=schedules.checker(
        "DDPMScheduler",
        {"variance_type": ("fixed_small", "fixed_small_log", "fixed_large")},
    ),
)
