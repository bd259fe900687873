"""Latent Consistency Model sampling (Luo et al. 2023, "Latent Consistency Models", Algorithm 1):
each step maps x_t straight to a clean estimate with the consistency boundary condition
c_skip x_t + c_out x0 (Song et al. 2023, "Consistency Models", sec. 3), then noises it afresh to
the next timestep. Timesteps are a subset of the `original_inference_steps` grid the model was
distilled on."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.thresholding import CLIP_DEFAULTS, clip_or_threshold
from paddiff.sampling import Sampler
from paddiff.sampling.denoiser import vp_coefficients

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "original_inference_steps": 50,  # the grid of timesteps the model was distilled on
    **CLIP_DEFAULTS,
    "clip_sample": False,
    "set_alpha_to_one": True,  # not used: the last step returns the clean estimate
    "steps_offset": 0,
    "timestep_spacing": "leading",  # not used: the grid comes from original_inference_steps
    "timestep_scaling": 10.0,  # timestep -> the boundary condition's time
    "rescale_betas_zero_snr": False,
}
SIGMA_DATA = 0.5  # of the consistency parameterisation (Song et al. 2023, sec. 3)


def lcm_schedule(config: dict, steps: int):
    """`steps` evenly picked points of the distillation grid (every T / original_inference_steps
    timesteps, ending on T - 1), ending on a clean sample; `c_skip` and `c_out` are each step's
    boundary-condition weights at time t * timestep_scaling, in float32 as diffusers has them."""
    original = config["original_inference_steps"]
    if not 1 <= steps <= original:
        raise ValueError(
            f"LCMScheduler takes 1 to original_inference_steps ({original}) steps, got {steps}"
        )
    stride = config["num_train_timesteps"] // original
    grid = (np.arange(1, original + 1) * stride - 1)[::-1]
    picks = np.floor(np.linspace(0, len(grid), steps, endpoint=False)).astype(np.int64)
    timesteps = grid[picks]
    scaled = (timesteps * config["timestep_scaling"]).astype(np.float32)
    sigma_data = np.float32(SIGMA_DATA**2)
    c_skip = sigma_data / (scaled**2 + sigma_data)
    c_out = scaled / np.sqrt(scaled**2 + sigma_data)
    return schedules.vp_schedule(config, timesteps, 1.0, c_skip=c_skip, c_out=c_out)


def sample_lcm(model, x, sigmas, *, noise, callback, start=0, c_skip, c_out, **options):
    last = len(sigmas) - 2
    for i in range(start, last + 1):
        x0 = clip_or_threshold(model(x, sigmas[i]), options)
        denoised = c_out[i] * x0 + c_skip[i] * x
        if i == last:
            x = denoised
        else:
            alpha_to, s_to = vp_coefficients(sigmas[i + 1])
            x = alpha_to * denoised + s_to * noise(x.shape)
        x = callback(i, x)
    return x


LCMScheduler = Sampler(
    name="LCMScheduler",
    sample=sample_lcm,
    schedule=lcm_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=schedules.checker("LCMScheduler"),
)
