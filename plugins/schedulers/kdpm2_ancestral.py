"""Ancestral DPM-Solver-2 (k-diffusion's sample_dpm_2_ancestral, "DPM2 a"): the DPM2 step aims
at sigma_down instead of the next sigma, then adds fresh noise of size sigma_up, as in Euler a."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction, schedules
from paddiff.plugins.schedulers.base import F32, as_f32, draw_noise
from paddiff.plugins.schedulers.kdpm2 import (
    KDPM2DiscreteScheduler,
    geometric_midpoints,
    interleave_timesteps,
    repeat_inner,
)


class KDPM2AncestralDiscreteScheduler(KDPM2DiscreteScheduler):
    def set_timesteps(self, num_inference_steps: int) -> None:
        timesteps, sigmas = self._step_sigmas(num_inference_steps)
        following = np.append(sigmas[1:], 0.0).astype(F32)
        with np.errstate(invalid="ignore", divide="ignore"):  # the final 0/0 is never used
            # up^2 = next^2 (s^2 - next^2) / s^2, down^2 = next^2 - up^2 = next^4 / s^2, written
            # without the subtraction that cancels (see euler_ancestral.py)
            sigmas_up = following * np.sqrt(sigmas**2 - following**2) / sigmas
            sigmas_down = following**2 / sigmas
        sigmas_down[-1] = 0.0
        middle = geometric_midpoints(sigmas, sigmas_down)  # middle[i]: between i and down[i]
        middle[-2:] = 0.0
        self.sigmas = repeat_inner(sigmas)
        self.sigmas_interpol = repeat_inner(middle)
        self.sigmas_up = repeat_inner(sigmas_up)
        self.sigmas_down = repeat_inner(sigmas_down)
        middle_t = schedules.sigma_to_timestep(middle, self.train_sigmas)
        self.timesteps = interleave_timesteps(timesteps, middle_t[:-2])
        self.num_inference_steps = num_inference_steps
        self._saved = None
        self._reset()

    def _sigma(self, timestep):
        i = self._index(timestep)
        return self.sigmas[i] if self._saved is None else self.sigmas_interpol[i - 1]

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sample, predict = as_f32(sample), self.config["prediction_type"]
        if self._saved is None:  # Euler half step to the midpoint
            sigma, sigma_mid = self.sigmas[i], self.sigmas_interpol[i]
            x0 = prediction.ve_to_x0(as_f32(model_output), sample, sigma, predict)
            self._saved = sample
            return self.output(sample + (sample - x0) / sigma * (sigma_mid - sigma), x0)
        sigma, sigma_mid = self.sigmas[i - 1], self.sigmas_interpol[i - 1]
        sigma_up, sigma_down = self.sigmas_up[i - 1], self.sigmas_down[i - 1]
        x0 = prediction.ve_to_x0(as_f32(model_output), sample, sigma_mid, predict)
        start, self._saved = self._saved, None
        prev = start + (sample - x0) / sigma_mid * (sigma_down - sigma)
        return self.output(prev + draw_noise(generator, sample.shape) * sigma_up, x0)
