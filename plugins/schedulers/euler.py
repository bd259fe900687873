"""Euler sampler (Karras et al. 2022, Algorithm 2 without churn): one model call per step,
following the probability-flow ODE dx/dsigma = (x - x0) / sigma."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction
from paddiff.plugins.schedulers.base import BETA_DEFAULTS, F32, SigmaScheduler, as_f32


class EulerDiscreteScheduler(SigmaScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
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
    CHOICES = {"interpolation_type": ("linear",), "timestep_type": ("discrete",)}

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        timesteps, sigmas = self._spaced_sigmas(num_inference_steps)
        last = self.train_sigmas[0] if self.config["final_sigmas_type"] == "sigma_min" else 0.0
        self.sigmas = np.append(sigmas, last).astype(F32)
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
        derivative = (sample - x0) / sigma
        return self.output(sample + derivative * (sigma_next - sigma), x0)
