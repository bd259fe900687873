"""DPM-Solver-2 in sigma (k-diffusion's sample_dpm_2, "DPM2"): a half step to the geometric
midpoint sigma_mid = sqrt(sigma * sigma_next), a model call there, and the full step with the
midpoint's slope (Lu et al. 2022, Algorithm 1 with r = 1/2, as adapted by Karras's k-diffusion).

Two model calls per step: `timesteps` alternates each step's timestep with its midpoint's."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction, schedules
from paddiff.plugins.schedulers.base import BETA_DEFAULTS, F32, SigmaScheduler, as_f32

KDPM2_DEFAULTS = {
    **BETA_DEFAULTS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "timestep_spacing": "linspace",
    "steps_offset": 0,
}


def repeat_inner(values: np.ndarray) -> np.ndarray:
    """[a, b, c] -> [a, b, b, c, c, c]: the first once, the rest twice, the last once more."""
    return np.concatenate([values[:1], np.repeat(values[1:], 2), values[-1:]])


def geometric_midpoints(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """exp((log a + log b) / 2) in float32; zero where either is zero."""
    with np.errstate(divide="ignore"):
        return np.exp((np.log(a) + np.log(b)) / F32(2)).astype(F32)


def interleave_timesteps(first: np.ndarray, middle: np.ndarray) -> np.ndarray:
    """[t0, m1, t1, m2, t2, ...]: each step's timestep followed by the next midpoint."""
    pairs = np.stack([middle, first[1:]], axis=-1).reshape(-1)
    return np.concatenate([first[:1], pairs]).astype(F32)


class KDPM2DiscreteScheduler(SigmaScheduler):
    DEFAULTS = KDPM2_DEFAULTS
    PREDICTION_TYPES = ("epsilon", "v_prediction")
    order = 2

    def _step_sigmas(self, num_inference_steps: int):
        self._check_steps(num_inference_steps)
        timesteps, sigmas = self._spaced_sigmas(num_inference_steps)
        if self.config["use_karras_sigmas"]:
            timesteps = timesteps.round()
        return timesteps.astype(F32), np.append(sigmas, 0.0).astype(F32)

    def set_timesteps(self, num_inference_steps: int) -> None:
        timesteps, sigmas = self._step_sigmas(num_inference_steps)
        middle = geometric_midpoints(sigmas, np.roll(sigmas, 1))  # middle[i]: between i-1 and i
        self.sigmas = repeat_inner(sigmas)
        self.sigmas_interpol = repeat_inner(middle)
        middle_t = schedules.sigma_to_timestep(middle, self.train_sigmas)
        self.timesteps = interleave_timesteps(timesteps, middle_t[1:-1])
        self.num_inference_steps = num_inference_steps
        self._saved = None  # the sample at the start of a step, during its second call
        self._reset()

    def _sigma(self, timestep):
        i = self._index(timestep)
        return self.sigmas[i] if self._saved is None else self.sigmas_interpol[i]

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sample, predict = as_f32(sample), self.config["prediction_type"]
        if self._saved is None:  # Euler half step to the midpoint
            sigma, sigma_mid = self.sigmas[i], self.sigmas_interpol[i + 1]
            x0 = prediction.ve_to_x0(as_f32(model_output), sample, sigma, predict)
            self._saved = sample
            return self.output(sample + (sample - x0) / sigma * (sigma_mid - sigma), x0)
        sigma, sigma_mid, sigma_next = self.sigmas[i - 1], self.sigmas_interpol[i], self.sigmas[i]
        x0 = prediction.ve_to_x0(as_f32(model_output), sample, sigma_mid, predict)
        start, self._saved = self._saved, None
        return self.output(start + (sample - x0) / sigma_mid * (sigma_next - sigma), x0)
