"""DPM-Solver++ singlestep (Lu et al. 2022, "DPM-Solver++", Algorithm 1; DPM-Solver, sec. 3.3):
steps are grouped, and within a group of order k every step restarts from the group's first
sample, so the group's k-th model call completes a k-th order step from there; the SDE variant
(`algorithm_type="sde-dpmsolver++"`) adds fresh noise at every step. WebUI names: "DPM++ SDE"
and "DPM++ SDE Karras" map here, as diffusers' documentation does (k-diffusion's
sample_dpmpp_sde is a similar second-order singlestep method)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules, solver
from paddiff.plugins.schedulers.dpmsolver_multistep import (
    DPM_CHOICES,
    DPM_DEFAULTS,
    exponential_step,
)
from paddiff.plugins.schedulers.thresholding import clip_or_threshold
from paddiff.sampling import Sampler, Schedule
from paddiff.sampling.denoiser import F32

DEFAULTS = {**DPM_DEFAULTS, "lower_order_final": False}


def singlestep_schedule(config: dict, steps: int) -> Schedule:
    """Linspace integer timesteps (cut at lambda_min_clipped), or Karras / exponential sigmas
    over the training range (timesteps rounded for Karras); then 0 or the smallest training
    sigma."""
    schedules.check_steps(config, steps)
    train = schedules.train_sigmas_for(config)
    T = config["num_train_timesteps"]
    timesteps = schedules.solver_timesteps(
        "linspace", steps, T, last=solver.usable_timesteps(config)
    )
    respaced = solver.respaced_sigmas(config, train, steps)
    if respaced is None:
        sigmas = schedules.interpolate_sigmas(timesteps, train)
    else:
        sigmas, timesteps = respaced
        if config["use_karras_sigmas"]:
            timesteps = timesteps.round()
    return solver.solver_schedule(timesteps, sigmas, solver.final_sigma(config, train), train)


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


def sample_dpmpp_singlestep(model, x, sigmas, *, noise, callback, start=0, **options):
    """DPM-Solver++ singlestep, orders 1-3, and its SDE form; x is in VP form."""
    steps, max_order = len(sigmas) - 1, options["solver_order"]
    sde = options["algorithm_type"] == "sde-dpmsolver++"
    final_is_zero = options["final_sigmas_type"] == "zero"
    # an order that does not divide the step count needs the shortened final group; the groups
    # are laid out on the whole schedule, also when `start` > 0 (as diffusers does)
    lower_final = options["lower_order_final"] or steps % max_order != 0 or final_is_zero
    orders = order_list(steps, max_order, lower_final, final_is_zero)
    alpha, s, lam = solver.vp(sigmas)
    x0s = []  # the x0 of the steps run so far, newest last
    group_start = x  # the sample every step of the current group starts from
    for i in range(start, steps):
        x0s = [*x0s, clip_or_threshold(model(x, sigmas[i]), options)][-max_order:]
        z = noise(x.shape) if sde else None
        # a run that starts inside a group (image-to-image) has fewer x0 than the group needs
        order = min(orders[i], len(x0s))
        if order == 1:
            group_start = x
        j = i + 1 - order  # the group's first step
        h = lam[i + 1] - lam[j]
        with np.errstate(divide="ignore", invalid="ignore"):  # the final step has s = 0
            ratio = s[i + 1] / s[j]
            step = (group_start, ratio, alpha[i + 1], s[i + 1], h)
            if order == 1:
                x = exponential_step(*step, x0s[-1], noise=z)
            elif order == 2:
                r0 = (lam[i] - lam[j]) / h
                d1 = (F32(1.0) / r0) * (x0s[-1] - x0s[-2])
                x = exponential_step(*step, x0s[-2], d1, options["solver_type"], noise=z)
            else:
                r0, r1 = (lam[i] - lam[j]) / h, (lam[i - 1] - lam[j]) / h
                d1_0 = (F32(1.0) / r1) * (x0s[-2] - x0s[-3])
                d1_1 = (F32(1.0) / r0) * (x0s[-1] - x0s[-3])
                if options["solver_type"] == "midpoint":
                    d1, d2 = d1_1, None
                else:
                    d1 = (r0 * d1_0 - r1 * d1_1) / (r0 - r1)
                    d2 = F32(2.0) * (d1_1 - d1_0) / (r0 - r1)
                x = exponential_step(*step, x0s[-3], d1, "heun", d2, noise=z)
        x = callback(i, x)
    return x


DPMSolverSinglestepScheduler = Sampler(
    name="DPMSolverSinglestepScheduler",
    sample=sample_dpmpp_singlestep,
    schedule=singlestep_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=solver.checker("DPMSolverSinglestepScheduler", DPM_CHOICES),
)
