"""DEIS multistep, the "log-rho" variant (Zhang & Chen 2023, "Fast Sampling of Diffusion Models
with Exponential Integrator", eq. 14-15): the noise prediction is extrapolated as a Lagrange
polynomial in log rho, rho = s / alpha (= sigma), through the last one to three steps, and
integrated exactly in rho; order 1 is the DDIM step. WebUI name: "DEIS"."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules, solver
from paddiff.plugins.schedulers.thresholding import clip_or_threshold
from paddiff.sampling import Sampler, Schedule
from paddiff.sampling.denoiser import F32

DEFAULTS = {
    **solver.SOLVER_DEFAULTS,
    "algorithm_type": "deis",
    "solver_type": "logrho",
    "timestep_spacing": "linspace",
    "steps_offset": 0,
}
CHOICES = {"algorithm_type": ("deis",), "solver_type": ("logrho",)}


def deis_schedule(config: dict, steps: int) -> Schedule:
    """The config's integer timesteps, or Karras / exponential sigmas over the training range
    (timesteps rounded for Karras); DEIS never ends on sigma 0, but on the smallest sigma of
    the respaced schedule, or of the training schedule."""
    schedules.check_steps(config, steps)
    train = schedules.train_sigmas_for(config)
    timesteps = schedules.solver_timesteps(
        config["timestep_spacing"], steps, config["num_train_timesteps"], config["steps_offset"]
    )
    respaced = solver.respaced_sigmas(config, train, steps)
    if respaced is None:
        sigmas = schedules.interpolate_sigmas(timesteps, train)
        final = train[0]
    else:
        sigmas, timesteps = respaced
        if config["use_karras_sigmas"]:
            timesteps = timesteps.round()
        final = sigmas[-1]
    return solver.solver_schedule(timesteps, sigmas, final, train)


def integral_2(t, b, c):
    """Antiderivative in rho of the linear Lagrange basis in log rho (1 at b, 0 at c)."""
    return t * (-np.log(c) + np.log(t) - 1) / (np.log(b) - np.log(c))


def integral_3(t, b, c, d):
    """Antiderivative in rho of the quadratic Lagrange basis in log rho (1 at b, 0 at c, d)."""
    lt, lc, ld = np.log(t), np.log(c), np.log(d)
    numerator = t * (lc * (ld - lt + 1) - ld * lt + ld + lt**2 - 2 * lt + 2)
    return numerator / ((np.log(b) - lc) * (np.log(b) - ld))


def sample_deis(model, x, sigmas, *, noise, callback, start=0, **options):
    """DEIS log-rho, orders 1-3; x is in VP form."""
    steps, max_order = len(sigmas) - 1, options["solver_order"]
    # lower orders for the last steps when there are few, counted on the whole schedule (as
    # diffusers does, also when `start` > 0)
    short = options["lower_order_final"] and steps < 15
    alpha, s, lam = solver.vp(sigmas)
    rho = s / alpha
    eps = []  # noise predictions of the steps run so far, newest last
    for i in range(start, steps):
        x0 = clip_or_threshold(model(x, sigmas[i]), options)
        # the noise from x = alpha x0 + s noise, so that thresholding acts through x0
        eps = [*eps, (x - alpha[i] * x0) / s[i]][-max_order:]
        order = len(eps)  # warm-up: no higher than the predictions at hand
        if i == steps - 1 and short:
            order = 1
        elif i == steps - 2 and short:
            order = min(order, 2)
        if order == 1:  # the DDIM step
            h = lam[i + 1] - lam[i]
            x = alpha[i + 1] / alpha[i] * x - s[i + 1] * (np.exp(h) - F32(1.0)) * eps[-1]
        elif order == 2:
            t, s0, s1 = rho[i + 1], rho[i], rho[i - 1]
            coef1 = integral_2(t, s0, s1) - integral_2(s0, s0, s1)
            coef2 = integral_2(t, s1, s0) - integral_2(s0, s1, s0)
            x = alpha[i + 1] * (x / alpha[i] + coef1 * eps[-1] + coef2 * eps[-2])
        else:
            t, s0, s1, s2 = rho[i + 1], rho[i], rho[i - 1], rho[i - 2]
            coef1 = integral_3(t, s0, s1, s2) - integral_3(s0, s0, s1, s2)
            coef2 = integral_3(t, s1, s2, s0) - integral_3(s0, s1, s2, s0)
            coef3 = integral_3(t, s2, s0, s1) - integral_3(s0, s2, s0, s1)
            x = alpha[i + 1] * (x / alpha[i] + coef1 * eps[-1] + coef2 * eps[-2] + coef3 * eps[-3])
        x = callback(i, x)
    return x


DEISMultistepScheduler = Sampler(
    name="DEISMultistepScheduler",
    sample=sample_deis,
    schedule=deis_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=solver.checker("DEISMultistepScheduler", CHOICES),
)
