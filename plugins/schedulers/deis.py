"""DEIS multistep, the "log-rho" variant (Zhang & Chen 2023, "Fast Sampling of Diffusion Models
with Exponential Integrator", eq. 14-15): the noise prediction is extrapolated as a Lagrange
polynomial in log rho, rho = sigma / alpha, and integrated exactly in rho (orders 1-3)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.base import F32, as_f32
from paddiff.plugins.schedulers.solver import SOLVER_DEFAULTS, SolverScheduler


def integral_2(t, b, c):
    """Antiderivative in rho of the linear Lagrange basis in log rho (1 at b, 0 at c)."""
    return t * (-np.log(c) + np.log(t) - 1) / (np.log(b) - np.log(c))


def integral_3(t, b, c, d):
    """Antiderivative in rho of the quadratic Lagrange basis in log rho (1 at b, 0 at c, d)."""
    lt, lc, ld = np.log(t), np.log(c), np.log(d)
    numerator = t * (lc * (ld - lt + 1) - ld * lt + ld + lt**2 - 2 * lt + 2)
    return numerator / ((np.log(b) - lc) * (np.log(b) - ld))


class DEISMultistepScheduler(SolverScheduler):
    DEFAULTS = {
        **SOLVER_DEFAULTS,
        "algorithm_type": "deis",
        "solver_type": "logrho",
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    }
    CHOICES = {"algorithm_type": ("deis",), "solver_type": ("logrho",)}

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        c, n = self.config, num_inference_steps
        timesteps = schedules.solver_timesteps(
            c["timestep_spacing"], n, c["num_train_timesteps"], c["steps_offset"]
        )
        respaced = self._respaced(n)
        if respaced is not None:
            sigmas, timesteps = respaced
            if c["use_karras_sigmas"]:
                timesteps = timesteps.round()
            final = sigmas[-1]  # DEIS ends on the respaced schedule's smallest sigma
        else:
            sigmas = schedules.interpolate_sigmas(timesteps, self.train_sigmas)
            final = self.train_sigmas[0]  # and on the training minimum otherwise, never on 0
        self.sigmas = np.append(sigmas, final).astype(F32)
        self.timesteps = np.asarray(timesteps).astype(np.int64)
        self.num_inference_steps = len(self.timesteps)
        self.eps_history: list = [None] * c["solver_order"]  # newest last
        self.warmed_up = 0
        self._reset()

    def _order(self, i: int) -> int:
        c, n = self.config, len(self.timesteps)
        short = c["lower_order_final"] and n < 15
        if i == n - 1 and short:
            return 1
        if i == n - 2 and short:
            return min(2, c["solver_order"], self.warmed_up + 1)
        return min(c["solver_order"], self.warmed_up + 1)

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sample = as_f32(sample)
        x0 = self._x0(as_f32(model_output), sample, i)
        alpha_s0, sigma_s0, lambda_s0 = self.coefficients(i)
        eps = (sample - alpha_s0 * x0) / sigma_s0  # thresholding acts through x0
        self.eps_history = [*self.eps_history[1:], eps]
        order = self._order(i)
        alpha_t, sigma_t, lambda_t = self.coefficients(i + 1)
        m = self.eps_history
        if order == 1:  # the DDIM step
            h = lambda_t - lambda_s0
            prev = alpha_t / alpha_s0 * sample - sigma_t * (np.exp(h) - F32(1.0)) * eps
        else:
            rho = [sigma_t / alpha_t] + [
                s / a for a, s, _ in (self.coefficients(i - k) for k in range(order))
            ]
            if order == 2:
                t, s0, s1 = rho
                coef1 = integral_2(t, s0, s1) - integral_2(s0, s0, s1)
                coef2 = integral_2(t, s1, s0) - integral_2(s0, s1, s0)
                prev = alpha_t * (sample / alpha_s0 + coef1 * m[-1] + coef2 * m[-2])
            else:
                t, s0, s1, s2 = rho
                coef1 = integral_3(t, s0, s1, s2) - integral_3(s0, s0, s1, s2)
                coef2 = integral_3(t, s1, s2, s0) - integral_3(s0, s1, s2, s0)
                coef3 = integral_3(t, s2, s0, s1) - integral_3(s0, s2, s0, s1)
                prev = alpha_t * (sample / alpha_s0 + coef1 * m[-1] + coef2 * m[-2] + coef3 * m[-3])
        self.warmed_up = min(self.warmed_up + 1, self.config["solver_order"])
        return self.output(prev, x0)
