"""DDPM ancestral sampling (Ho et al. 2020, eq. 6-7): sample x_{t'} from the Gaussian posterior
q(x_{t'} | x_t, x0) given the predicted x0, for the previous timestep t' of the schedule."""

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


class DDPMScheduler(BaseScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        **CLIP_DEFAULTS,
        "variance_type": "fixed_small",
        "timestep_spacing": "leading",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }
    # fixed_small: the posterior variance beta~_t; fixed_large: beta_t (Ho et al. sec. 3.2)
    CHOICES = {"variance_type": ("fixed_small", "fixed_small_log", "fixed_large")}

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        self.timesteps = integer_timesteps(self.config, num_inference_steps)
        self.num_inference_steps = num_inference_steps
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        t = int(self.timesteps[i])
        prev_t = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1
        abar = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else F32(1.0)
        alpha = abar / abar_prev  # the combined alpha of the skipped training steps
        beta = 1 - alpha
        sample = as_f32(sample)
        x0 = prediction.to_x0(
            as_f32(model_output),
            sample,
            np.sqrt(abar),
            np.sqrt(1 - abar),
            self.config["prediction_type"],
        )
        x0 = prediction.clip_or_threshold(x0, self.config)
        # posterior mean (Ho et al. eq. 7)
        prev = (np.sqrt(abar_prev) * beta / (1 - abar)) * x0 + (
            np.sqrt(alpha) * (1 - abar_prev) / (1 - abar)
        ) * sample
        if t > 0:
            if self.config["variance_type"] == "fixed_large":
                std = np.sqrt(beta)
            else:
                std = np.sqrt(np.maximum((1 - abar_prev) / (1 - abar) * beta, F32(1e-20)))
            prev = prev + std * draw_noise(generator, sample.shape)
        return self.output(prev, x0)
