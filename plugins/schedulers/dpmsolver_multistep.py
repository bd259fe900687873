"""DPM-Solver++ multistep, orders 1-3 (Lu et al. 2022, "DPM-Solver++", Algorithms 1-2), and its
SDE variant (`algorithm_type="sde-dpmsolver++"`, Gonzalez et al. 2023 / k-diffusion's
sample_dpmpp_2m_sde): the ODE is integrated in lambda = log(alpha / s) with the data prediction
x0 held polynomial, the x0 of previous steps giving the derivative terms D1 and D2. WebUI names:
"DPM++ 2M" (order 2), "DPM++ 2M Karras" (+ use_karras_sigmas), "DPM++ 2M SDE"
(sde-dpmsolver++), "DPM++ 3M SDE" (order 3, sde-dpmsolver++)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules, solver
from paddiff.plugins.schedulers.thresholding import clip_or_threshold
from paddiff.sampling import Sampler, Schedule
from paddiff.sampling.denoiser import F32

#: Options of both DPM-Solver++ forms (multistep and singlestep).
DPM_DEFAULTS = {
    **solver.SOLVER_DEFAULTS,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",  # how the second-order term is weighted: midpoint or heun
    "final_sigmas_type": "zero",
    "lambda_min_clipped": -float("inf"),
}
DPM_CHOICES = {
    "algorithm_type": ("dpmsolver++", "sde-dpmsolver++"),
    "solver_type": ("midpoint", "heun"),
}
DEFAULTS = {
    **DPM_DEFAULTS,
    "euler_at_final": False,
    "use_lu_lambdas": False,
    "timestep_spacing": "linspace",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}


def dpm_schedule(config: dict, steps: int) -> Schedule:
    """The config's integer timesteps (cut at lambda_min_clipped), or Karras / exponential /
    Lu sigmas over the training range with their timesteps (rounded, except for the cosine
    schedule and exponential sigmas, as diffusers does); then 0 or the smallest training sigma."""
    schedules.check_steps(config, steps)
    train = schedules.train_sigmas_for(config)
    timesteps = schedules.solver_timesteps(
        config["timestep_spacing"],
        steps,
        config["num_train_timesteps"],
        config["steps_offset"],
        last=solver.usable_timesteps(config),
    )
    respaced = solver.respaced_sigmas(config, train, steps)
    if config["use_lu_lambdas"]:  # evenly spaced in log sigma (Lu et al. 2023, "DPM-Solver-v3")
        sigmas = np.exp(np.linspace(float(np.log(train[-1])), float(np.log(train[0])), steps))
        respaced = sigmas, schedules.sigma_to_timestep(sigmas, train)
    if respaced is None:
        sigmas = schedules.interpolate_sigmas(timesteps, train)
    else:
        sigmas, timesteps = respaced
        if config["beta_schedule"] != "squaredcos_cap_v2" and not config["use_exponential_sigmas"]:
            timesteps = timesteps.round()
    return solver.solver_schedule(timesteps, sigmas, solver.final_sigma(config, train), train)


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


def sample_dpmpp_multistep(model, x, sigmas, *, noise, callback, start=0, **options):
    """DPM-Solver++(1M/2M/3M) and its SDE form; x is in VP form."""
    steps, max_order = len(sigmas) - 1, options["solver_order"]
    sde = options["algorithm_type"] == "sde-dpmsolver++"
    # Lower orders at the end: with few steps they are stabler, and a step that lands on sigma 0
    # is exact at first order. Counted on the whole schedule, also when `start` > 0 (diffusers).
    short = options["lower_order_final"] and steps < 15
    first_order_last = short or options["euler_at_final"] or options["final_sigmas_type"] == "zero"
    alpha, s, lam = solver.vp(sigmas)
    x0s = []  # the x0 of the steps run so far, newest last: the multistep history
    for i in range(start, steps):
        x0s = [*x0s, clip_or_threshold(model(x, sigmas[i]), options)][-max_order:]
        z = noise(x.shape) if sde else None
        order = len(x0s)  # warm-up: no higher than the x0 estimates at hand
        if i == steps - 1 and first_order_last:
            order = 1
        elif i == steps - 2 and short:
            order = min(order, 2)
        h = lam[i + 1] - lam[i]
        with np.errstate(divide="ignore", invalid="ignore"):  # the final step has s = 0
            ratio = s[i + 1] / s[i]
            m0 = x0s[-1]
            if order == 1:
                x = exponential_step(x, ratio, alpha[i + 1], s[i + 1], h, m0, noise=z)
            elif order == 2:
                r0 = (lam[i] - lam[i - 1]) / h
                d1 = (F32(1.0) / r0) * (m0 - x0s[-2])
                rule = options["solver_type"]
                x = exponential_step(x, ratio, alpha[i + 1], s[i + 1], h, m0, d1, rule, noise=z)
            else:
                r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
                m1, m2 = x0s[-2], x0s[-3]
                d1_0, d1_1 = (F32(1.0) / r0) * (m0 - m1), (F32(1.0) / r1) * (m1 - m2)
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (F32(1.0) / (r0 + r1)) * (d1_0 - d1_1)
                x = exponential_step(
                    x, ratio, alpha[i + 1], s[i + 1], h, m0, d1, "heun", d2, noise=z
                )
        x = callback(i, x)
    return x


DPMSolverMultistepScheduler = Sampler(
    name="DPMSolverMultistepScheduler",
    sample=sample_dpmpp_multistep,
    schedule=dpm_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=solver.checker("DPMSolverMultistepScheduler", DPM_CHOICES),
)
