"""Latent Consistency Model sampling (Luo et al. 2023, Algorithm 1): each step maps x_t straight
to a clean estimate with the consistency boundary condition (c_skip, c_out), then re-noises it to
the next timestep with fresh noise. Timesteps are a subset of the `original_inference_steps`
grid the model was distilled on."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction
from paddiff.plugins.schedulers.base import (
    BETA_DEFAULTS,
    CLIP_DEFAULTS,
    F32,
    BaseScheduler,
    as_f32,
    draw_noise,
)

SIGMA_DATA = 0.5  # of the consistency parameterisation (Song et al. 2023, sec. 3)


class LCMScheduler(BaseScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        **CLIP_DEFAULTS,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "original_inference_steps": 50,
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "timestep_spacing": "leading",  # not used: the grid comes from original_inference_steps
        "timestep_scaling": 10.0,
        "rescale_betas_zero_snr": False,
    }

    def set_timesteps(self, num_inference_steps: int) -> None:
        original = self.config["original_inference_steps"]
        if not 1 <= num_inference_steps <= original:
            raise ValueError(
                f"LCMScheduler takes 1 to original_inference_steps ({original}) steps, "
                f"got {num_inference_steps}"
            )
        stride = self.config["num_train_timesteps"] // original
        grid = (np.arange(1, original + 1) * stride - 1)[::-1]
        picks = np.floor(np.linspace(0, len(grid), num_inference_steps, endpoint=False))
        self.timesteps = grid[picks.astype(np.int64)].astype(np.int64)
        self.num_inference_steps = num_inference_steps
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        t = int(self.timesteps[i])
        last = i == len(self.timesteps) - 1
        prev_t = t if last else int(self.timesteps[i + 1])
        final = F32(1.0) if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        abar = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else final
        scaled_t = F32(t * self.config["timestep_scaling"])
        c_skip = F32(SIGMA_DATA**2) / (scaled_t**2 + F32(SIGMA_DATA**2))
        c_out = scaled_t / np.sqrt(scaled_t**2 + F32(SIGMA_DATA**2))
        sample = as_f32(sample)
        x0 = prediction.to_x0(
            as_f32(model_output),
            sample,
            np.sqrt(abar),
            np.sqrt(1 - abar),
            self.config["prediction_type"],
        )
        x0 = prediction.clip_or_threshold(x0, self.config)
        denoised = c_out * x0 + c_skip * sample
        if last:
            return self.output(denoised, denoised)
        noise = draw_noise(generator, sample.shape)
        return self.output(np.sqrt(abar_prev) * denoised + np.sqrt(1 - abar_prev) * noise, denoised)
