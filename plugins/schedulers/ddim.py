"""DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12): from the predicted x0
and noise eps, x' = alpha' x0 + sqrt(s'^2 - std^2) eps + std * noise, where std is `eta` times
the DDPM posterior's standard deviation (eq. 16). eta = 0 is the deterministic sampler, eta = 1
has DDPM's variance. `eta` is a config option here (diffusers passes it to `step`)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.thresholding import CLIP_DEFAULTS, clip_or_threshold
from paddiff.sampling import Sampler
from paddiff.sampling.denoiser import vp_coefficients

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    **CLIP_DEFAULTS,
    # abar after the last step: 1 (a clean sample) or abar_0 (SD's configs say False)
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "timestep_spacing": "leading",
    "rescale_betas_zero_snr": False,
    "eta": 0.0,
}


def ddim_schedule(config: dict, steps: int):
    """The config's spacing rounded to training timesteps. Each step lands on abar[t - T // n]
    whatever the spacing (as diffusers steps), so with "trailing" or "linspace" spacing a step's
    target (`targets`) can differ from the next step's sigma."""
    schedules.check_steps(config, steps)
    T = config["num_train_timesteps"]
    spaced = schedules.spaced_timesteps(
        config["timestep_spacing"], steps, T, config["steps_offset"]
    )
    timesteps = np.round(spaced).astype(np.int64)
    end = 1.0 if config["set_alpha_to_one"] else schedules.alphas_cumprod_from_config(config)[0]
    targets = schedules.vp_sigmas(config, timesteps - T // steps, end)
    return schedules.vp_schedule(config, timesteps, end, targets=targets)


def sample_ddim(model, x, sigmas, *, noise, callback, start=0, targets, eta=0.0, **options):
    for i in range(start, len(sigmas) - 1):
        alpha, s = vp_coefficients(sigmas[i])
        alpha_to, s_to = vp_coefficients(targets[i])
        x0 = model(x, sigmas[i])
        eps = (x - alpha * x0) / s  # from the unclipped x0, as diffusers keeps the model's eps
        x0 = clip_or_threshold(x0, options)
        # eta times the std of the posterior q(x' | x, x0) (Song et al. eq. 16), whose variance
        # (1 - abar') / (1 - abar) * (1 - abar / abar') is written s'^2 (1 - sigma'^2 / sigma^2):
        # 1 - abar / abar' cancels near sigma = 0
        std = np.float32(eta) * s_to * np.sqrt(1 - targets[i] ** 2 / sigmas[i] ** 2)
        x = alpha_to * x0 + np.sqrt(s_to**2 - std**2) * eps
        if eta > 0:
            x = x + std * noise(x.shape)
        x = callback(i, x)
    return x


DDIMScheduler = Sampler(
    name="DDIMScheduler",
    sample=sample_ddim,
    schedule=ddim_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=schedules.checker("DDIMScheduler"),
)
