"""Shared base of the exponential-integrator ODE solvers (DPM-Solver, UniPC, DEIS)."""

from __future__ import annotations

from typing import Any

import numpy as np
from paddiff.plugins.schedulers import prediction, schedules
from paddiff.plugins.schedulers.base import (
    BETA_DEFAULTS,
    F32,
    BaseScheduler,
    as_f32,
    floor_zero_terminal_snr,
)

#: Options shared by the exponential-integrator solvers (DPM-Solver, UniPC, DEIS).
SOLVER_DEFAULTS = {
    **BETA_DEFAULTS,
    "solver_order": 2,
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0,
    "lower_order_final": True,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
}


class SolverScheduler(BaseScheduler):
    """Multistep ODE solvers in log-SNR time (DPM-Solver, UniPC, DEIS). They keep the sample in
    VP form (the model input is the sample itself) and step between the VE `sigmas`, with
    lambda = log(alpha / s) = -log(sigma) as the integration variable."""

    def __init__(self, **config: Any):
        super().__init__(**config)
        if self.config["solver_order"] not in (1, 2, 3):
            raise ValueError(f"solver_order must be 1, 2 or 3, got {self.config['solver_order']}")
        floor_zero_terminal_snr(self)
        self.train_sigmas = schedules.sigmas_from_alphas_cumprod(self.alphas_cumprod)
        self.sigmas = np.zeros(0, dtype=F32)

    def _respaced(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(sigmas, fractional timesteps) for Karras or exponential sigmas spanning the whole
        training range, or None when the config asks for neither."""
        c = self.config
        lo = c.get("sigma_min") or float(self.train_sigmas[0])
        hi = c.get("sigma_max") or float(self.train_sigmas[-1])
        if c["use_karras_sigmas"]:
            sigmas = schedules.karras_sigmas(lo, hi, n)
        elif c["use_exponential_sigmas"]:
            sigmas = schedules.exponential_sigmas(lo, hi, n)
        else:
            return None
        return sigmas, schedules.sigma_to_timestep(sigmas, self.train_sigmas)

    def _usable_timesteps(self) -> int:
        """1 + the largest timestep to start from: with lambda_min_clipped, the noisiest
        timesteps whose log-SNR lambda is below that limit are left out (for cosine schedules)."""
        abar = self.alphas_cumprod
        with np.errstate(divide="ignore"):
            lambdas = np.log(np.sqrt(abar)) - np.log(np.sqrt(1 - abar))
        clipped = int(np.searchsorted(lambdas[::-1], self.config["lambda_min_clipped"]))
        return self.config["num_train_timesteps"] - clipped

    def _final_sigma(self) -> float:
        return (
            float(self.train_sigmas[0]) if self.config["final_sigmas_type"] == "sigma_min" else 0.0
        )

    def coefficients(self, i: int):
        """(alpha, s, lambda) of sigmas[i], in float32; lambda is +inf at sigma = 0."""
        alpha, s = schedules.alpha_sigma(self.sigmas[i])
        with np.errstate(divide="ignore"):
            return alpha, s, np.log(alpha) - np.log(s)

    def _x0(self, model_output, sample, i: int):
        alpha, s, _ = self.coefficients(i)
        x0 = prediction.to_x0(model_output, sample, alpha, s, self.config["prediction_type"])
        return prediction.clip_or_threshold(x0, self.config)

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timesteps) -> np.ndarray:
        """alpha * x0 + s * noise with each timestep's sigma from the current schedule."""
        index = [self.index_for_timestep(t) for t in np.asarray(timesteps).reshape(-1)]
        alpha, s = schedules.alpha_sigma(self.sigmas[index])
        shape = (-1,) + (1,) * (np.ndim(original) - 1)
        return (alpha.reshape(shape) * as_f32(original) + s.reshape(shape) * as_f32(noise)).astype(
            F32
        )
