"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework"), the B(h)
variants bh1 / bh2: a multistep predictor (UniP, Algorithm 2) whose result is refined by a
corrector (UniC, Algorithm 1) once the model has been evaluated there, at no extra model call.

Both solve a small linear system for the weights rho of the divided differences D1 of previous
model outputs (eq. 7-8). With predict_x0 the model output is converted to x0 (UniPC++ style data
prediction), otherwise to noise."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import prediction, schedules
from paddiff.plugins.schedulers.base import F32, as_f32
from paddiff.plugins.schedulers.solver import SOLVER_DEFAULTS, SolverScheduler


class UniPCMultistepScheduler(SolverScheduler):
    DEFAULTS = {
        **SOLVER_DEFAULTS,
        "predict_x0": True,
        "solver_type": "bh2",
        "disable_corrector": [],  # step indices whose result is not corrected
        "solver_p": None,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "final_sigmas_type": "zero",
        "rescale_betas_zero_snr": False,
        "sigma_min": None,
        "sigma_max": None,
    }
    CHOICES = {"solver_type": ("bh1", "bh2"), "solver_p": (None,)}

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        c, n = self.config, num_inference_steps
        timesteps = schedules.solver_timesteps(
            c["timestep_spacing"], n, c["num_train_timesteps"], c["steps_offset"]
        )
        respaced = self._respaced(n)
        final = self._final_sigma()
        if respaced is not None:
            sigmas, timesteps = respaced
            if c["use_karras_sigmas"]:
                timesteps = timesteps.round()
            if c["final_sigmas_type"] == "sigma_min":
                final = float(np.float32(sigmas[-1]))  # the respaced schedule's own minimum
        else:
            sigmas = schedules.interpolate_sigmas(timesteps, self.train_sigmas)
        self.sigmas = np.append(sigmas, final).astype(F32)
        self.timesteps = np.asarray(timesteps).astype(np.int64)
        self.num_inference_steps = len(self.timesteps)
        self.outputs: list = [None] * c["solver_order"]  # converted model outputs, newest last
        self.warmed_up = 0
        self.last_sample = None  # the sample the previous prediction started from
        self.this_order = 1
        self._reset()

    def _convert(self, model_output, sample, i):
        if self.config["predict_x0"]:
            return self._x0(model_output, sample, i)
        alpha, s, _ = self.coefficients(i)
        return prediction.to_epsilon(model_output, sample, alpha, s, self.config["prediction_type"])

    def _weights_system(self, rks, hh, order):
        """The matrix R (powers of the step ratios r_k) and right-hand side b of eq. 7, with
        B(h) = hh (bh1) or expm1(hh) (bh2), and h*phi_1 = expm1(hh)."""
        h_phi_1 = np.expm1(hh)
        h_phi_k = h_phi_1 / hh - F32(1.0)
        B_h = hh if self.config["solver_type"] == "bh1" else np.expm1(hh)
        R, b, factorial = [], [], 1
        for k in range(1, order + 1):
            R.append(rks ** (k - 1))
            b.append(h_phi_k * factorial / B_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - F32(1.0) / factorial
        return np.array(R, dtype=F32), np.array(b, dtype=F32), h_phi_1, B_h

    def _differences(self, i_start, lambda_start, h, history, order):
        """Step ratios r_k and divided differences (m_k - m_0) / r_k of older outputs."""
        rks, d1s = [], []
        for k in range(1, order):
            lambda_k = self.coefficients(i_start - k)[2]
            rk = (lambda_k - lambda_start) / h
            rks.append(rk)
            d1s.append((history[-(k + 1)] - history[-1]) / rk)
        return np.array([*rks, F32(1.0)], dtype=F32), d1s

    def _base(self, x, i_from, i_to, m0, h_phi_1):
        alpha_t, sigma_t, _ = self.coefficients(i_to)
        alpha_s, sigma_s, _ = self.coefficients(i_from)
        if self.config["predict_x0"]:
            return sigma_t / sigma_s * x - alpha_t * h_phi_1 * m0, alpha_t
        return alpha_t / alpha_s * x - sigma_t * h_phi_1 * m0, sigma_t

    def _predict(self, x, i, order):
        """UniP-p: from sigmas[i] to sigmas[i + 1]."""
        lambda_s, lambda_t = self.coefficients(i)[2], self.coefficients(i + 1)[2]
        h = lambda_t - lambda_s
        rks, d1s = self._differences(i, lambda_s, h, self.outputs, order)
        hh = -h if self.config["predict_x0"] else h
        R, b, h_phi_1, B_h = self._weights_system(rks, hh, order)
        x_t, scale = self._base(x, i, i + 1, self.outputs[-1], h_phi_1)
        if d1s:
            rhos = np.array([0.5], F32) if order == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
            x_t = x_t - scale * B_h * sum(F32(r) * d for r, d in zip(rhos, d1s, strict=True))
        return x_t

    def _correct(self, this_output, x, i, order):
        """UniC-p: redo the step from sigmas[i - 1] to sigmas[i] with the new output there."""
        lambda_s, lambda_t = self.coefficients(i - 1)[2], self.coefficients(i)[2]
        h = lambda_t - lambda_s
        rks, d1s = self._differences(i - 1, lambda_s, h, self.outputs, order)
        hh = -h if self.config["predict_x0"] else h
        R, b, h_phi_1, B_h = self._weights_system(rks, hh, order)
        m0 = self.outputs[-1]
        corrected, scale = self._base(x, i - 1, i, m0, h_phi_1)
        rhos = np.array([0.5], F32) if order == 1 else np.linalg.solve(R, b)
        residual = sum(F32(r) * d for r, d in zip(rhos[:-1], d1s, strict=True)) if d1s else 0
        return corrected - scale * B_h * (residual + rhos[-1] * (this_output - m0))

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        c = self.config
        sample = as_f32(sample)
        converted = self._convert(as_f32(model_output), sample, i)
        with np.errstate(divide="ignore", invalid="ignore"):
            if i > 0 and (i - 1) not in c["disable_corrector"] and self.last_sample is not None:
                sample = self._correct(converted, self.last_sample, i, self.this_order)
            self.outputs = [*self.outputs[1:], converted]
            order = c["solver_order"]
            if c["lower_order_final"]:
                order = min(order, len(self.timesteps) - i)
            self.this_order = min(order, self.warmed_up + 1)
            self.last_sample = sample
            prev = self._predict(sample, i, self.this_order)
        self.warmed_up = min(self.warmed_up + 1, c["solver_order"])
        return self.output(prev)
