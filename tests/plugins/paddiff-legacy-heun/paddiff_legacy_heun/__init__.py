"""Heun's second-order sampler (Karras et al. 2022, Algorithm 1 without churn), written to the
diffusers-style scheduler protocol: a stateful object whose `step` alternates between an Euler
step and its correction, with every inner timestep listed twice. Written independently of
paddiff's built-ins, as a third-party author would."""

from __future__ import annotations

import numpy as np
from paddiff.interfaces import Scheduler, SchedulerOutput

DEFAULTS = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
}


class LegacyHeunScheduler(Scheduler):
    order = 2

    def __init__(self, **config):
        self.config = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
        c = self.config
        betas = np.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, c["num_train_timesteps"])
        abar = np.cumprod(1.0 - (betas**2).astype(np.float32).astype(np.float64))
        self.train_sigmas = np.sqrt((1 - abar) / abar)
        self.set_timesteps(50)

    @classmethod
    def from_config(cls, config: dict) -> LegacyHeunScheduler:
        return cls(**config)

    def set_timesteps(self, num_inference_steps: int) -> None:
        n = self.config["num_train_timesteps"]
        steps = np.linspace(0, n - 1, num_inference_steps)[::-1].astype(np.float32)
        sigmas = np.interp(steps, np.arange(n), self.train_sigmas)
        sigmas = np.append(sigmas, 0.0).astype(np.float32)
        # [s0, s1, s1, s2, s2, ..., 0] and [t0, t1, t1, ...]: each inner point is visited twice
        self.sigmas = np.concatenate([sigmas[:1], np.repeat(sigmas[1:-1], 2), sigmas[-1:]])
        self.timesteps = np.concatenate([steps[:1], np.repeat(steps[1:], 2)])
        self.init_noise_sigma = float(sigmas.max())
        self._index = None  # found from the first timestep a run is given, then counted
        self._first = None  # (slope, dt, sample) between the two stages

    def _position(self, timestep) -> int:
        """Where `timestep` is in the schedule: a run may start part-way (image-to-image);
        a repeated timestep starts at its second entry, the start of a whole step."""
        if self._index is None:
            matches = np.flatnonzero(self.timesteps == timestep)
            self._index = int(matches[-1])
        return self._index

    def scale_model_input(self, sample, timestep):
        sigma = self.sigmas[self._position(timestep)]
        return (sample / np.sqrt(sigma**2 + 1)).astype(np.float32)

    def step(self, model_output, timestep, sample, generator=None) -> SchedulerOutput:
        sigma = self.sigmas[self._position(timestep)]
        denoised = sample - sigma * model_output  # epsilon prediction
        if self._first is None:
            sigma_next = self.sigmas[self._index + 1]
            slope = (sample - denoised) / sigma
            self._first = (slope, sigma_next - sigma, sample)
            prev = sample + slope * (sigma_next - sigma)
        else:
            first_slope, dt, start = self._first
            self._first = None
            prev = start + (first_slope + (sample - denoised) / sigma) / 2 * dt
        self._index += 1
        return SchedulerOutput(prev.astype(np.float32), denoised.astype(np.float32))

    def add_noise(self, original, noise, timesteps):
        t = np.asarray(timesteps, dtype=np.float64).reshape(-1)
        sigma = np.interp(t, np.arange(len(self.train_sigmas)), self.train_sigmas)
        sigma = sigma.reshape((-1,) + (1,) * (original.ndim - 1)).astype(np.float32)
        return (original + noise * sigma).astype(np.float32)
