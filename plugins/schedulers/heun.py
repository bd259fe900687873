"""Heun's second-order sampler (Karras et al. 2022, Algorithm 1 without churn): an Euler step,
then a second model call at its end point and a step with the mean of the two slopes.

Each step takes two model calls, so `timesteps` lists every inner timestep twice after the
first, and `sigmas` likewise, as diffusers does; `step` alternates between the two stages.
"""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction
from paddiff.plugins.schedulers.base import BETA_DEFAULTS, F32, SigmaScheduler, as_f32


def interleave(values: np.ndarray) -> np.ndarray:
    """[a, b, c] -> [a, b, b, c]: the first and last once, the ones between twice."""
    return np.concatenate([values[:1], np.repeat(values[1:-1], 2), values[-1:]])


class HeunDiscreteScheduler(SigmaScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    }
    order = 2

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        timesteps, sigmas = self._spaced_sigmas(num_inference_steps)
        self.sigmas = interleave(np.append(sigmas, 0.0).astype(F32))
        timesteps = timesteps.astype(F32)
        self.timesteps = np.concatenate([timesteps[:1], np.repeat(timesteps[1:], 2)])
        self.num_inference_steps = num_inference_steps
        self._first_stage = None  # (slope, dt, sample) saved between the two stages
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sample, model_output = as_f32(sample), as_f32(model_output)
        predict = self.config["prediction_type"]
        if self._first_stage is None:  # Euler step from sigma to sigma_next
            sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
            x0 = prediction.clip_or_threshold(
                prediction.ve_to_x0(model_output, sample, sigma, predict), self.config
            )
            slope = (sample - x0) / sigma
            self._first_stage = (slope, sigma_next - sigma, sample)
            return self.output(sample + slope * (sigma_next - sigma), x0)
        # correction: the model was evaluated at the Euler step's end point, sigma_next
        sigma_next = self.sigmas[i]
        x0 = prediction.clip_or_threshold(
            prediction.ve_to_x0(model_output, sample, sigma_next, predict), self.config
        )
        first_slope, dt, start = self._first_stage
        self._first_stage = None
        slope = (first_slope + (sample - x0) / sigma_next) / 2
        return self.output(start + slope * dt, x0)
