"""Shared pieces of the exponential-integrator solvers (DPM-Solver, UniPC, DEIS), as pure
functions: their schedule (integer timesteps, or Karras / exponential sigmas over the whole
training range; the final sigma), the VP coefficients of the noise levels, and the config check.

The solvers keep x in VP form, x = alpha x0 + s noise with alpha = 1 / sqrt(sigma^2 + 1) and
s = sigma alpha (the network's own input), and integrate in the log-SNR
lambda = log(alpha / s) = -log(sigma) (Lu et al. 2022, "DPM-Solver", sec. 3.1).
"""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.sampling import Schedule
from paddiff.sampling.denoiser import F32, vp_coefficients

#: Options shared by the exponential-integrator solvers (diffusers' defaults).
SOLVER_DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "solver_order": 2,
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0,
    "lower_order_final": True,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
}


def vp(sigmas):
    """(alpha, s, lambda) of each noise level, float32 as diffusers computes them; lambda is
    +inf at sigma = 0."""
    alpha, s = vp_coefficients(sigmas)
    with np.errstate(divide="ignore"):
        return alpha, s, np.log(alpha) - np.log(s)


def respaced_sigmas(config: dict, train_sigmas: np.ndarray, steps: int):
    """(sigmas, fractional timesteps) for Karras or exponential sigmas spanning the whole
    training range (sigma_min / sigma_max when the config gives them), or None when the config
    asks for neither."""
    lo = config.get("sigma_min") or float(train_sigmas[0])
    hi = config.get("sigma_max") or float(train_sigmas[-1])
    if config["use_karras_sigmas"]:
        sigmas = schedules.karras_sigmas(lo, hi, steps)
    elif config["use_exponential_sigmas"]:
        sigmas = schedules.exponential_sigmas(lo, hi, steps)
    else:
        return None
    return sigmas, schedules.sigma_to_timestep(sigmas, train_sigmas)


def usable_timesteps(config: dict) -> int:
    """1 + the largest timestep to start from: with lambda_min_clipped, the noisiest timesteps
    whose log-SNR is below that limit are left out (for cosine schedules)."""
    abar = schedules.alphas_cumprod_from_config(config)
    if config.get("rescale_betas_zero_snr"):
        abar[-1] = 2.0**-24  # as schedules.train_sigmas_for floors it
    with np.errstate(divide="ignore"):
        lambdas = np.log(np.sqrt(abar)) - np.log(np.sqrt(1 - abar))
    clipped = int(np.searchsorted(lambdas[::-1], config["lambda_min_clipped"]))
    return config["num_train_timesteps"] - clipped


def final_sigma(config: dict, train_sigmas: np.ndarray) -> float:
    """Where the last step lands: 0, or the smallest training sigma with "sigma_min"."""
    return float(train_sigmas[0]) if config["final_sigmas_type"] == "sigma_min" else 0.0


def solver_schedule(timesteps, sigmas, final: float, train_sigmas: np.ndarray) -> Schedule:
    """The Schedule of a solver: integer network timesteps (as diffusers passes them), the
    sigmas with the final one appended, and unit initial noise (x is in VP form)."""
    return Schedule(
        sigmas=np.append(sigmas, final).astype(F32),
        timesteps=np.asarray(timesteps).astype(np.int64),
        init_sigma=1.0,
        train_sigmas=train_sigmas,
    )


def checker(name: str, choices: dict):
    """schedules.checker with the solvers' solver_order range."""
    check_options = schedules.checker(name, choices)

    def check(config: dict) -> None:
        check_options(config)
        if config["solver_order"] not in (1, 2, 3):
            raise ValueError(
                f"{name}: solver_order must be 1, 2 or 3, got {config['solver_order']}"
            )

    return check
