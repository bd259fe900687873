"""DPM-Solver++ multistep, orders 1-3 (Lu et al. 2022, "DPM-Solver++", Algorithms 1-2), and its
SDE variant (`algorithm_type="sde-dpmsolver++"`, Gonzalez et al. 2023 / k-diffusion's
sample_dpmpp_2m_sde). The solver integrates the ODE in lambda = log(alpha / s) with the data
prediction x0 held polynomial: previous steps' x0 give the derivative terms D1 and D2.

WebUI names: "DPM++ 2M" (order 2), "DPM++ 2M Karras" (+ use_karras_sigmas), "DPM++ 2M SDE"
(sde-dpmsolver++), "DPM++ 3M SDE" (order 3, sde-dpmsolver++)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.base import F32, as_f32, draw_noise
from paddiff.plugins.schedulers.solver import SOLVER_DEFAULTS, SolverScheduler

DPM_DEFAULTS = {
    **SOLVER_DEFAULTS,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",  # how the second-order term is weighted: midpoint or heun
    "final_sigmas_type": "zero",
    "lambda_min_clipped": -float("inf"),
}
DPM_CHOICES = {
    "algorithm_type": ("dpmsolver++", "sde-dpmsolver++"),
    "solver_type": ("midpoint", "heun"),
}


def exponential_step(
    x, ratio, alpha_t, sigma_t, h, d0, d1=None, d1_rule="midpoint", d2=None, noise=None
):
    """One DPM-Solver++ update to the target (alpha_t, sigma_t) from a start whose s_t / s_start
    is `ratio`, over lambda-distance h, with x0 estimate d0 and difference terms d1, d2.

    ODE (Lu et al. 2022, eq. 9 and its 2nd/3rd-order Taylor terms), with E = exp(-h) - 1:
        x_t = ratio x - alpha_t E d0 [- alpha_t E d1 / 2 | + alpha_t (E/h + 1) d1]
              - alpha_t ((E + h) / h^2 - 1/2) d2
    SDE (noise given): the same with h doubled in the exponentials, x scaled by exp(-h), and
    sigma_t sqrt(1 - exp(-2h)) noise added.
    """
    sde = noise is not None
    hh = 2 * h if sde else h
    E = np.exp(-hh) - F32(1.0)
    x_t = (ratio * np.exp(-h) if sde else ratio) * x - (alpha_t * E) * d0
    if d1 is not None:
        if d1_rule == "midpoint":
            x_t = x_t - F32(0.5) * (alpha_t * E) * d1
        else:
            x_t = x_t + alpha_t * (E / hh + F32(1.0)) * d1
    if d2 is not None:
        # the SDE's third-order weight as diffusers has it (the sign of 1/2 differs from the ODE's)
        half = F32(-0.5) if sde else F32(0.5)
        x_t = x_t + alpha_t * (-(E + hh) / hh**2 + half) * d2
    if sde:
        x_t = x_t + (sigma_t * np.sqrt(-E)) * noise
    return x_t


class DPMSolverMultistepScheduler(SolverScheduler):
    DEFAULTS = {
        **DPM_DEFAULTS,
        "euler_at_final": False,
        "use_lu_lambdas": False,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }
    CHOICES = DPM_CHOICES

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        c, n = self.config, num_inference_steps
        timesteps = schedules.solver_timesteps(
            c["timestep_spacing"],
            n,
            c["num_train_timesteps"],
            c["steps_offset"],
            last=self._usable_timesteps(),
        )
        respaced = self._respaced(n)
        if c["use_lu_lambdas"]:  # evenly spaced in log sigma (Lu et al. 2023, "DPM-Solver-v3")
            log_train = np.log(self.train_sigmas)
            sigmas = np.exp(np.linspace(float(log_train[-1]), float(log_train[0]), n))
            respaced = sigmas, schedules.sigma_to_timestep(sigmas, self.train_sigmas)
        if respaced is not None:
            sigmas, timesteps = respaced
            if c["beta_schedule"] != "squaredcos_cap_v2" and not c["use_exponential_sigmas"]:
                timesteps = timesteps.round()
        else:
            sigmas = schedules.interpolate_sigmas(timesteps, self.train_sigmas)
        self.sigmas = np.append(sigmas, self._final_sigma()).astype(F32)
        self.timesteps = np.asarray(timesteps).astype(np.int64)
        self.num_inference_steps = len(self.timesteps)
        self.x0_history: list = [None] * c["solver_order"]  # newest last
        self.warmed_up = 0  # steps taken so far, up to solver_order
        self._reset()

    def _order(self, i: int) -> int:
        c, n = self.config, len(self.timesteps)
        short = c["lower_order_final"] and n < 15  # few steps: lower orders at the end are stabler
        if i == n - 1 and (c["euler_at_final"] or short or c["final_sigmas_type"] == "zero"):
            return 1
        if i == n - 2 and short:
            return min(2, c["solver_order"], self.warmed_up + 1)
        return min(c["solver_order"], self.warmed_up + 1)

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sample = as_f32(sample)
        x0 = self._x0(as_f32(model_output), sample, i)
        self.x0_history = [*self.x0_history[1:], x0]
        sde = self.config["algorithm_type"] == "sde-dpmsolver++"
        noise = draw_noise(generator, sample.shape) if sde else None
        order = self._order(i)
        alpha_t, sigma_t, lambda_t = self.coefficients(i + 1)
        _, sigma_s0, lambda_s0 = self.coefficients(i)
        h = lambda_t - lambda_s0
        rule = self.config["solver_type"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = sigma_t / sigma_s0
            m0 = self.x0_history[-1]
            if order == 1:
                prev = exponential_step(sample, ratio, alpha_t, sigma_t, h, m0, noise=noise)
            elif order == 2:
                r0 = (lambda_s0 - self.coefficients(i - 1)[2]) / h
                d1 = (F32(1.0) / r0) * (m0 - self.x0_history[-2])
                prev = exponential_step(
                    sample, ratio, alpha_t, sigma_t, h, m0, d1, rule, noise=noise
                )
            else:
                lambda_s1, lambda_s2 = self.coefficients(i - 1)[2], self.coefficients(i - 2)[2]
                r0, r1 = (lambda_s0 - lambda_s1) / h, (lambda_s1 - lambda_s2) / h
                m1, m2 = self.x0_history[-2], self.x0_history[-3]
                d1_0, d1_1 = (F32(1.0) / r0) * (m0 - m1), (F32(1.0) / r1) * (m1 - m2)
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (F32(1.0) / (r0 + r1)) * (d1_0 - d1_1)
                prev = exponential_step(
                    sample, ratio, alpha_t, sigma_t, h, m0, d1, "heun", d2, noise=noise
                )
        self.warmed_up = min(self.warmed_up + 1, self.config["solver_order"])
        return self.output(prev, x0)
