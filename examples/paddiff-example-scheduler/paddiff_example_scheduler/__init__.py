"""An example paddiff scheduler plugin: the Euler method of Karras et al. (2022), Algorithm 2
without churn, on Stable Diffusion's "scaled_linear" noise schedule.

It is deliberately small and self-contained (NumPy only) so it reads as a template.
"""

from __future__ import annotations

import numpy as np
from paddiff.interfaces import Scheduler, SchedulerOutput

DEFAULTS = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
}


class ExampleEulerScheduler(Scheduler):
    """Deterministic Euler steps in sigma space (x = x0 + sigma * noise)."""

    order = 1

    def __init__(self, **config):
        self.config = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
        n = self.config["num_train_timesteps"]
        # scaled_linear: betas are linear in sqrt space (the schedule Stable Diffusion trained on).
        betas = (
            np.linspace(self.config["beta_start"] ** 0.5, self.config["beta_end"] ** 0.5, n) ** 2
        )
        alphas_cumprod = np.cumprod(1.0 - betas)
        self.train_sigmas = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
        self.set_timesteps(50)

    @classmethod
    def from_config(cls, config: dict) -> ExampleEulerScheduler:
        return cls(**config)

    def set_timesteps(self, num_inference_steps: int) -> None:
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        n = self.config["num_train_timesteps"]
        self.timesteps = np.linspace(n - 1, 0, num_inference_steps)
        sigmas = np.interp(self.timesteps, np.arange(n), self.train_sigmas)
        self.sigmas = np.append(sigmas, 0.0)
        self.init_noise_sigma = float(np.sqrt(self.sigmas[0] ** 2 + 1))
        self._step_index = 0

    def _sigma(self, timestep: float) -> float:
        index = int(np.argmin(np.abs(self.timesteps - timestep)))
        return float(self.sigmas[index])

    def scale_model_input(self, sample, timestep):
        # The UNet was trained on variance-preserving inputs: divide by sqrt(sigma^2 + 1).
        return (sample / np.sqrt(self._sigma(timestep) ** 2 + 1)).astype(sample.dtype)

    def step(self, model_output, timestep, sample, generator=None) -> SchedulerOutput:
        index = int(np.argmin(np.abs(self.timesteps - timestep)))
        sigma, sigma_next = self.sigmas[index], self.sigmas[index + 1]
        if self.config["prediction_type"] == "epsilon":
            denoised = sample - sigma * model_output
        elif self.config["prediction_type"] == "v_prediction":
            c = 1.0 / (sigma**2 + 1)
            denoised = model_output * (-sigma * c**0.5) + sample * c
        else:
            raise ValueError(f"unsupported prediction_type {self.config['prediction_type']!r}")
        derivative = (sample - denoised) / sigma
        prev = sample + derivative * (sigma_next - sigma)
        return SchedulerOutput(prev.astype(sample.dtype), denoised.astype(sample.dtype))

    def add_noise(self, original, noise, timesteps):
        t = np.asarray(timesteps, dtype=np.float64).reshape(-1)
        sigma = np.interp(t, np.arange(len(self.train_sigmas)), self.train_sigmas)
        sigma = sigma.reshape((-1,) + (1,) * (original.ndim - 1))
        return (original + noise * sigma).astype(original.dtype)
