"""Euler ancestral sampler ("Euler a"; k-diffusion's sample_euler_ancestral): an Euler step down
to sigma_down, then fresh noise of size sigma_up, so that sigma_down^2 + sigma_up^2 equals the
next sigma^2 (eta = 1)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction
from paddiff.plugins.schedulers.base import (
    BETA_DEFAULTS,
    F32,
    SigmaScheduler,
    as_f32,
    draw_noise,
)


class EulerAncestralDiscreteScheduler(SigmaScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }
    PREDICTION_TYPES = ("epsilon", "v_prediction")

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        timesteps, sigmas = self._spaced_sigmas(num_inference_steps)
        self.sigmas = np.append(sigmas, 0.0).astype(F32)
        self.timesteps = timesteps.astype(F32)
        self.num_inference_steps = num_inference_steps
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        sample = as_f32(sample)
        x0 = prediction.ve_to_x0(
            as_f32(model_output), sample, sigma, self.config["prediction_type"]
        )
        # sigma_up^2 = next^2 (sigma^2 - next^2) / sigma^2 and sigma_down^2 = next^2 - sigma_up^2
        # = next^4 / sigma^2; written so that nothing cancels (diffusers subtracts, which rounds
        # below 0, hence NaN, on the cosine schedule's sigma_max of 2e4)
        sigma_up = sigma_next * np.sqrt(sigma**2 - sigma_next**2) / sigma
        sigma_down = sigma_next**2 / sigma
        prev = sample + (sample - x0) / sigma * (sigma_down - sigma)
        prev = prev + draw_noise(generator, sample.shape) * sigma_up
        return self.output(prev, x0)
