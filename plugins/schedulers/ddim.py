"""DDIM (Song et al. 2021, eq. 12): x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t' - std^2) eps
+ std * noise, with std = eta * sqrt(posterior variance). eta = 0 is the deterministic sampler;
eta = 1 matches DDPM's variance. `eta` is a config option here (diffusers passes it to step)."""

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
    integer_timesteps,
)


class DDIMScheduler(BaseScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        **CLIP_DEFAULTS,
        # abar used after the last step: 1 (a clean sample) or abar_0 (SD's configs say False)
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
        "eta": 0.0,
    }

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        self.timesteps = integer_timesteps(self.config, num_inference_steps)
        self.num_inference_steps = num_inference_steps
        self._reset()

    def step(self, model_output, timestep, sample, generator=None, eta: float | None = None):
        self._index(timestep)
        eta = self.config["eta"] if eta is None else eta
        t = int(timestep)
        # diffusers steps back by T // n whatever the spacing; kept for parity
        prev_t = t - self.config["num_train_timesteps"] // self.num_inference_steps
        final = F32(1.0) if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        abar = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else final
        sample, model_output = as_f32(sample), as_f32(model_output)
        alpha, s = np.sqrt(abar), np.sqrt(1 - abar)
        predict = self.config["prediction_type"]
        x0 = prediction.to_x0(model_output, sample, alpha, s, predict)
        eps = prediction.to_epsilon(model_output, sample, alpha, s, predict)
        x0 = prediction.clip_or_threshold(x0, self.config)
        variance = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
        std = F32(eta) * np.sqrt(variance)
        prev = np.sqrt(abar_prev) * x0 + np.sqrt(1 - abar_prev - std**2) * eps
        if eta > 0:
            prev = prev + std * draw_noise(generator, sample.shape)
        return self.output(prev, x0)
