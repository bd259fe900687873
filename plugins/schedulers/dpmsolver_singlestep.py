"""DPM-Solver++ singlestep (Lu et al. 2022, "DPM-Solver++", Algorithm 1 / DPM-Solver eq. 3.x):
steps are grouped; within a group of order k, every intermediate model call restarts from the
group's first sample, so the k-th call completes a k-th order step from there.

WebUI names: "DPM++ SDE" and "DPM++ SDE Karras" map here, as diffusers' documentation does
(k-diffusion's sample_dpmpp_sde is a similar second-order singlestep method)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.base import F32, as_f32, draw_noise
from paddiff.plugins.schedulers.dpmsolver_multistep import (
    DPM_CHOICES,
    DPM_DEFAULTS,
    exponential_step,
)
from paddiff.plugins.schedulers.solver import SolverScheduler


def order_list(steps: int, order: int, lower_order_final: bool, final_is_zero: bool) -> list[int]:
    """The order of each step: groups (1, 2, ..., order) repeated, shortened at the end."""
    if lower_order_final:
        full, rest = divmod(steps, order)
        if order == 3 and rest == 0:
            orders = [1, 2, 3] * (full - 1) + [1, 2] + [1]
        elif order == 2 and rest == 0:
            orders = [1, 2] * (full - 1) + [1, 1]
        else:
            orders = list(range(1, order + 1)) * full + list(range(1, rest + 1))
    else:
        orders = list(range(1, order + 1)) * (steps // order)
    if final_is_zero:
        orders[-1] = 1  # the last step lands on sigma = 0: a first-order step is exact enough
    return orders


class DPMSolverSinglestepScheduler(SolverScheduler):
    DEFAULTS = {**DPM_DEFAULTS, "lower_order_final": False}
    CHOICES = DPM_CHOICES

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        c, n = self.config, num_inference_steps
        T = c["num_train_timesteps"]
        timesteps = schedules.solver_timesteps("linspace", n, T, last=self._usable_timesteps())
        respaced = self._respaced(n)
        if respaced is not None:
            sigmas, timesteps = respaced
            if c["use_karras_sigmas"]:
                timesteps = timesteps.round()
        else:
            sigmas = schedules.interpolate_sigmas(timesteps, self.train_sigmas)
        self.sigmas = np.append(sigmas, self._final_sigma()).astype(F32)
        self.timesteps = np.asarray(timesteps).astype(np.int64)
        self.num_inference_steps = n = len(self.timesteps)
        # an order that does not divide the step count needs the shortened final group
        lower_final = (
            c["lower_order_final"] or n % c["solver_order"] != 0 or c["final_sigmas_type"] == "zero"
        )
        final_is_zero = c["final_sigmas_type"] == "zero"
        self.orders = order_list(n, c["solver_order"], lower_final, final_is_zero)
        self.x0_history: list = [None] * c["solver_order"]
        self.group_start = None  # the sample every call of the current group starts from
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sample = as_f32(sample)
        x0 = self._x0(as_f32(model_output), sample, i)
        self.x0_history = [*self.x0_history[1:], x0]
        sde = self.config["algorithm_type"] == "sde-dpmsolver++"
        noise = draw_noise(generator, sample.shape) if sde else None
        order = self.orders[i]
        while self.x0_history[-order] is None:
            order -= 1
        if order == 1:
            self.group_start = sample
        alpha_t, sigma_t, lambda_t = self.coefficients(i + 1)
        _, sigma_start, lambda_start = self.coefficients(i + 1 - order)  # the group's start
        h = lambda_t - lambda_start
        m = self.x0_history
        rule = self.config["solver_type"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = sigma_t / sigma_start
            if order == 1:
                prev = exponential_step(
                    self.group_start, ratio, alpha_t, sigma_t, h, m[-1], noise=noise
                )
            elif order == 2:
                r0 = (self.coefficients(i)[2] - lambda_start) / h
                d1 = (F32(1.0) / r0) * (m[-1] - m[-2])
                prev = exponential_step(
                    self.group_start, ratio, alpha_t, sigma_t, h, m[-2], d1, rule, noise=noise
                )
            else:
                r0 = (self.coefficients(i)[2] - lambda_start) / h
                r1 = (self.coefficients(i - 1)[2] - lambda_start) / h
                d1_0 = (F32(1.0) / r1) * (m[-2] - m[-3])
                d1_1 = (F32(1.0) / r0) * (m[-1] - m[-3])
                if rule == "midpoint":
                    d1, d2 = d1_1, None
                else:
                    d1 = (r0 * d1_0 - r1 * d1_1) / (r0 - r1)
                    d2 = F32(2.0) * (d1_1 - d1_0) / (r0 - r1)
                prev = exponential_step(
                    self.group_start, ratio, alpha_t, sigma_t, h, m[-3], d1, "heun", d2, noise=noise
                )
        return self.output(prev, x0)
