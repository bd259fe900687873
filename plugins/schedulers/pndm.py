"""PNDM / PLMS (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"):
a linear multistep (Adams-Bashforth, up to 4th order, eq. 12) combination of the network's last
outputs, pushed through the DDIM-like transfer step of eq. 11. Multistep needs history, so the
run warms up: with three pseudo Runge-Kutta steps (eq. 13, four network calls each), or with
`skip_prk_steps` (Stable Diffusion's choice) one pseudo improved-Euler step (two calls)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.sampling import Sampler
from paddiff.sampling.denoiser import vp_coefficients

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "skip_prk_steps": False,
    "set_alpha_to_one": False,  # abar after the last step: 1, or abar_0
    "timestep_spacing": "leading",
    "steps_offset": 0,
}


def pndm_schedule(config: dict, steps: int):
    """The config's spacing rounded to training timesteps. As diffusers steps, each transfer
    goes from t to t - k (k = T // n) whatever the spacing (`targets`); the improved-Euler
    warm-up's second transfer starts from t' + k, where t' is the next step's timestep
    (`corrector_from`); a Runge-Kutta step from t to t' goes through t - k/2 and t' + k/2
    (`prk_first`, `prk_mid`), where the network is evaluated at t' + k/2. Over "leading"
    spacing (every k timesteps) these are the textbook points."""
    schedules.check_steps(config, steps)
    if not config["skip_prk_steps"] and steps < 4:
        raise ValueError("PNDM with pseudo Runge-Kutta steps needs at least 4 steps")
    T = config["num_train_timesteps"]
    k, half = T // steps, T // steps // 2
    spaced = schedules.spaced_timesteps(
        config["timestep_spacing"], steps, T, config["steps_offset"]
    )
    timesteps = np.round(spaced).astype(np.int64)
    end = 1.0 if config["set_alpha_to_one"] else schedules.alphas_cumprod_from_config(config)[0]
    # t' of each step; the last has none (-T - 1 keeps its unused points below 0)
    following = np.append(timesteps[1:], -T - 1)
    mid = following + half
    return schedules.vp_schedule(
        config,
        timesteps,
        end,
        targets=schedules.vp_sigmas(config, timesteps - k, end),
        corrector_from=schedules.vp_sigmas(config, following + k, end),
        prk_first=schedules.vp_sigmas(config, timesteps - half, end),
        prk_mid=schedules.vp_sigmas(config, mid, end),
        prk_mid_timesteps=mid,  # the network's timestep at the Runge-Kutta midpoints
    )


def plms(o):
    """The Adams-Bashforth combination of 1-4 outputs (newest last), in diffusers' order."""
    if len(o) == 1:
        return o[-1]
    if len(o) == 2:
        return (3 * o[-1] - o[-2]) / 2
    if len(o) == 3:
        return (23 * o[-1] - 16 * o[-2] + 5 * o[-3]) / 12
    return (1 / 24) * (55 * o[-1] - 59 * o[-2] + 37 * o[-3] - 9 * o[-4])


def sample_pndm(
    model,
    x,
    sigmas,
    *,
    noise,
    callback,
    start=0,
    targets,
    corrector_from,
    prk_first,
    prk_mid,
    prk_mid_timesteps,
    skip_prk_steps,
    prediction_type,
    **options,
):
    def output(x, sigma, timestep=None):
        """The network's own output (eps, or v) at x, back from x0: PLMS combines those."""
        alpha, s = vp_coefficients(sigma)
        x0 = model(x, sigma, timestep)
        return (x - alpha * x0) / s if prediction_type == "epsilon" else (alpha * x - x0) / s

    def transfer(x, out, sigma, sigma_to):
        """Liu et al. eq. 11: x from sigma to sigma_to along the network output `out`, in abar
        with diffusers' float32 order (see schedules.abar_of_sigma)."""
        abar, abar_to = schedules.abar_of_sigma(sigma), schedules.abar_of_sigma(sigma_to)
        if prediction_type == "v_prediction":  # the combined v, to eps at this x
            out = abar**0.5 * out + (1 - abar) ** 0.5 * x
        denominator = abar * (1 - abar_to) ** 0.5 + (abar * (1 - abar) * abar_to) ** 0.5
        return (abar_to / abar) ** 0.5 * x - (abar_to - abar) * out / denominator

    outputs = []  # the last network outputs that start a step, newest last
    last = len(sigmas) - 2
    for i in range(start, last + 1):
        out = output(x, sigmas[i])
        if not skip_prk_steps and len(outputs) < 3 and i < last:
            # pseudo Runge-Kutta (eq. 13): three more calls, each from x
            x1 = transfer(x, out, sigmas[i], prk_first[i])
            out1 = output(x1, prk_mid[i], prk_mid_timesteps[i])
            x2 = transfer(x, out1, sigmas[i], prk_mid[i])
            out2 = output(x2, prk_mid[i], prk_mid_timesteps[i])
            x3 = transfer(x, out2, sigmas[i], sigmas[i + 1])
            out3 = output(x3, sigmas[i + 1])
            rk4 = 1 / 6 * out + 1 / 3 * out1 + 1 / 3 * out2 + 1 / 6 * out3
            x = transfer(x, rk4, sigmas[i], sigmas[i + 1])
            outputs.append(out)
        elif not outputs and i < last:
            # pseudo improved Euler: predict, then redo the step with the mean of both outputs
            predicted = transfer(x, out, sigmas[i], targets[i])
            mean = (output(predicted, sigmas[i + 1]) + out) / 2
            x = transfer(x, mean, corrector_from[i], sigmas[i + 1])
            outputs.append(out)
        else:
            outputs = [*outputs[-3:], out]
            x = transfer(x, plms(outputs), sigmas[i], targets[i])
        x = callback(i, x)
    return x


PNDMScheduler = Sampler(
    name="PNDMScheduler",
    sample=sample_pndm,
    schedule=pndm_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=schedules.checker("PNDMScheduler", prediction_types=("epsilon", "v_prediction")),
)
