"""Noise schedules as small pure functions (NumPy only).

Notation (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"):
the forward process at training step t is x_t = alpha_t * x_0 + s_t * noise with
alpha_t = sqrt(alphas_cumprod[t]) and s_t = sqrt(1 - alphas_cumprod[t]); dividing by alpha_t gives
the variance-exploding form x_0 + sigma_t * noise with sigma_t = s_t / alpha_t. Samplers in the
k-diffusion family step in sigma; DDIM-like ones step in alphas_cumprod; both come from here.

Schedules are computed in float64 and stored in float32, the precision diffusers keeps them in.
"""

from __future__ import annotations

import math

import numpy as np

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def make_betas(
    beta_schedule: str,
    num_train_timesteps: int,
    beta_start: float,
    beta_end: float,
    trained_betas=None,
) -> np.ndarray:
    """Per-step noise variances beta_t, float32 as diffusers keeps them."""
    n = num_train_timesteps
    if trained_betas is not None:
        return np.asarray(trained_betas, dtype=np.float32)
    if beta_schedule == "linear":  # DDPM (Ho et al. 2020)
        return np.linspace(beta_start, beta_end, n).astype(np.float32)
    if beta_schedule == "scaled_linear":  # Stable Diffusion: linear in sqrt(beta)
        return np.linspace(beta_start**0.5, beta_end**0.5, n).astype(np.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, eq. 17, beta capped at 0.999
        t = np.arange(n + 1) / n
        alpha_bar = np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999).astype(np.float32)
    raise ValueError(
        f"unknown beta_schedule {beta_schedule!r}; expected one of {', '.join(BETA_SCHEDULES)}"
    )


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Shift and scale sqrt(alphas_cumprod) so the last step is pure noise (Lin et al. 2023,
    "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1)."""
    root = np.sqrt(np.cumprod(1.0 - betas.astype(np.float64)))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    alphas_cumprod = root**2
    alphas = np.concatenate([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return (1.0 - alphas).astype(np.float32)


def alphas_cumprod_from_config(config: dict) -> np.ndarray:
    """alphas_cumprod (float32) for a scheduler config's beta options."""
    betas = make_betas(
        config["beta_schedule"],
        config["num_train_timesteps"],
        config["beta_start"],
        config["beta_end"],
        config.get("trained_betas"),
    )
    if config.get("rescale_betas_zero_snr"):
        betas = rescale_zero_terminal_snr(betas)
    # 1 - beta in float32, the product accumulated in float64 (as torch.cumprod does on CPU)
    return np.cumprod((1 - betas).astype(np.float64)).astype(np.float32)


def sigmas_from_alphas_cumprod(alphas_cumprod: np.ndarray) -> np.ndarray:
    """sigma_t = sqrt((1 - abar_t) / abar_t), ascending with t (float32)."""
    a = alphas_cumprod.astype(np.float64)
    with np.errstate(divide="ignore"):  # abar = 0 (zero terminal SNR) means sigma = inf
        return np.sqrt((1 - a) / a).astype(np.float32)


def spaced_timesteps(
    spacing: str, num_steps: int, num_train_timesteps: int, steps_offset: int = 0
) -> np.ndarray:
    """Descending training timesteps to visit (float64, possibly fractional for "linspace").

    leading:  0, k, 2k, ... counted from 0 (k = T // n), then `steps_offset` added (SD used 1);
    trailing: counted down from T - 1 in steps of T / n (Lin et al. 2023, Table 2);
    linspace: n evenly spaced points from T - 1 down to 0, not rounded.
    """
    T, n = num_train_timesteps, num_steps
    if spacing == "linspace":
        return np.linspace(0, T - 1, n)[::-1].copy()
    if spacing == "leading":
        return (np.arange(n) * (T // n)).round()[::-1] + steps_offset
    if spacing == "trailing":
        return trailing_points(T, T, n).round() - 1
    raise ValueError(
        f"unknown timestep_spacing {spacing!r}; expected one of {', '.join(TIMESTEP_SPACINGS)}"
    )


def trailing_points(last: int, T: int, n: int) -> np.ndarray:
    """last, last - T/n, last - 2T/n, ... while above 1/2, the points diffusers takes from
    np.arange(last, 0, -T / n); that arange can end on a float-noise point just above 0 (for
    example T = 1000, n = 998), which rounds to timestep -1."""
    points = last - np.arange(n) * (T / n)
    return points[points > 0.5]


def solver_timesteps(
    spacing: str, num_steps: int, num_train_timesteps: int, steps_offset: int = 0, last: int = 0
) -> np.ndarray:
    """Integer timesteps for the multistep ODE solvers (DPM-Solver, UniPC, DEIS): n + 1 points
    with the final one (t = 0) dropped, so the solver ends on a sigma given separately.
    `last` is the largest usable timestep + 1 (less than T when lambda_min_clipped cuts the end).

    Near n = T the rounded points repeat; a repeated timestep would be a zero-length step that
    the solvers divide by (diffusers returns NaN there), so repeats are dropped: the solver then
    takes as many steps as there are distinct timesteps.
    """
    T, n = num_train_timesteps, num_steps
    last = last or T
    if spacing == "linspace":
        timesteps = np.linspace(0, last - 1, n + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ratio = last // (n + 1)
        if ratio == 0:
            raise ValueError(f"timestep_spacing='leading' allows at most {last - 1} steps here")
        timesteps = (np.arange(n + 1) * ratio).round()[::-1][:-1] + steps_offset
    elif spacing == "trailing":
        timesteps = trailing_points(last, T, n).round() - 1
    else:
        raise ValueError(
            f"unknown timestep_spacing {spacing!r}; expected one of {', '.join(TIMESTEP_SPACINGS)}"
        )
    timesteps = np.unique(timesteps.astype(np.int64))[::-1].copy()
    return check_in_range(
        timesteps,
        {"num_train_timesteps": T, "timestep_spacing": spacing, "steps_offset": steps_offset},
    )


def check_in_range(timesteps: np.ndarray, config: dict) -> np.ndarray:
    """Refuse timesteps past the training range (leading spacing plus steps_offset can push the
    last one to T when every training step is used); diffusers fails later, with an IndexError."""
    T = config["num_train_timesteps"]
    if len(timesteps) and timesteps.max() > T - 1:
        raise ValueError(
            f"{len(timesteps)} steps with timestep_spacing={config.get('timestep_spacing')!r} "
            f"and steps_offset={config.get('steps_offset')} reach timestep {timesteps.max()}, "
            f"past the last training timestep {T - 1}; use fewer steps or steps_offset=0"
        )
    return timesteps


def interpolate_sigmas(timesteps: np.ndarray, train_sigmas: np.ndarray) -> np.ndarray:
    """sigma at (possibly fractional) timesteps, linear between training steps (float64)."""
    return np.interp(timesteps, np.arange(len(train_sigmas)), train_sigmas.astype(np.float64))


def sigma_to_timestep(sigmas: np.ndarray, train_sigmas: np.ndarray) -> np.ndarray:
    """The inverse: fractional timesteps whose log-sigma interpolates to `sigmas` (float64)."""
    # log in float32, as diffusers takes it, so fractional timesteps agree to the last digit
    log_train = np.log(train_sigmas.astype(np.float32)).astype(np.float64)
    log_sigma = np.log(np.maximum(np.asarray(sigmas, dtype=np.float64), 1e-10))
    # index of the last training sigma not above each sigma, kept off the final interval
    low = np.clip(np.searchsorted(log_train, log_sigma, side="right") - 1, 0, len(log_train) - 2)
    w = np.clip((log_train[low] - log_sigma) / (log_train[low] - log_train[low + 1]), 0, 1)
    return (1 - w) * low + w * (low + 1)


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022, eq. 5: sigmas evenly spaced in sigma^(1/rho)."""
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """Sigmas evenly spaced in log sigma."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def alpha_sigma(sigma):
    """VP coefficients for a VE sigma: alpha = 1 / sqrt(sigma^2 + 1), s = sigma * alpha."""
    alpha = 1 / np.sqrt(sigma**2 + 1)
    return alpha, sigma * alpha


# -- whole schedules, as the sampler functions take them ------------------------------------------

#: Options every built-in sampler reads (diffusers' defaults), and diffusers options paddiff
#: does not implement: a config that switches one on is refused rather than sampled otherwise.
BETA_DEFAULTS = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
}
NOT_IMPLEMENTED = ("use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting", "shift_terminal")


def checker(name: str, choices: dict | None = None, prediction_types=None):
    """check(config) for a sampler: unimplemented options refused, choices enforced."""
    allowed = {
        "beta_schedule": BETA_SCHEDULES,
        "timestep_spacing": TIMESTEP_SPACINGS,
        "prediction_type": prediction_types or ("epsilon", "v_prediction", "sample"),
        "final_sigmas_type": ("zero", "sigma_min"),
        **(choices or {}),
    }

    def check(config: dict) -> None:
        switched_on = [key for key in NOT_IMPLEMENTED if config.get(key)]
        if switched_on:
            raise ValueError(f"{name}: paddiff does not implement {', '.join(switched_on)}")
        for key, values in allowed.items():
            if key in config and config[key] not in values:
                raise ValueError(
                    f"{name}: {key}={config[key]!r} is not supported; "
                    f"expected one of {', '.join(map(repr, values))}"
                )
        if config.get("use_karras_sigmas") and config.get("use_exponential_sigmas"):
            raise ValueError("use_karras_sigmas and use_exponential_sigmas exclude each other")

    return check


def check_steps(config: dict, steps: int) -> None:
    if not 1 <= steps <= config["num_train_timesteps"]:
        raise ValueError(
            f"num_inference_steps must be between 1 and num_train_timesteps "
            f"({config['num_train_timesteps']}), got {steps}"
        )


def train_sigmas_for(config: dict, floor_zero_snr: bool = True) -> np.ndarray:
    """The training schedule's sigma per timestep. With rescale_betas_zero_snr the last abar is
    0 (sigma = inf); sigma-based samplers use abar = 2**-24 there instead, as diffusers does."""
    abar = alphas_cumprod_from_config(config)
    if floor_zero_snr and config.get("rescale_betas_zero_snr"):
        abar[-1] = 2.0**-24
    return sigmas_from_alphas_cumprod(abar)


def ve_sigmas(config: dict, steps: int, train_sigmas: np.ndarray):
    """(timesteps, sigmas) in float64, without the final sigma, for the k-diffusion-style
    samplers: the config's spacing, then Karras or exponential sigmas over the same range
    (mapped back to fractional timesteps) when asked for."""
    check_steps(config, steps)
    timesteps = spaced_timesteps(
        config["timestep_spacing"], steps, config["num_train_timesteps"], config["steps_offset"]
    )
    timesteps = check_in_range(timesteps, config).astype(np.float32)
    sigmas = interpolate_sigmas(timesteps, train_sigmas)
    lo = config.get("sigma_min") or float(sigmas[-1])
    hi = config.get("sigma_max") or float(sigmas[0])
    if config.get("use_karras_sigmas"):
        sigmas = karras_sigmas(lo, hi, steps)
    elif config.get("use_exponential_sigmas"):
        sigmas = exponential_sigmas(lo, hi, steps)
    else:
        return timesteps.astype(np.float64), sigmas
    return sigma_to_timestep(sigmas, train_sigmas), sigmas


def ve_init_sigma(config: dict, sigmas: np.ndarray) -> float:
    """diffusers' init_noise_sigma for sigma samplers: sigma_max, except with "leading" spacing,
    which starts below T - 1 and scales the noise by sqrt(sigma_max^2 + 1)."""
    sigma_max = float(np.max(sigmas))
    if config["timestep_spacing"] in ("linspace", "trailing"):
        return sigma_max
    return float(np.sqrt(sigma_max**2 + 1))


# -- VP schedules: the samplers that step in alphas_cumprod (DDPM, DDIM, PNDM, LCM) ---------------


def vp_sigmas(config: dict, timesteps, end_abar: float) -> np.ndarray:
    """sigma of abar_t at each training timestep t (inf where abar_t = 0, the zero-terminal-SNR
    start); where t < 0 (stepping past the first training step), the sigma of `end_abar`: 1
    gives a clean sample, abar_0 is where diffusers ends without set_alpha_to_one."""
    abar = alphas_cumprod_from_config(config)
    t = np.asarray(timesteps, dtype=np.int64)
    return sigmas_from_alphas_cumprod(
        np.where(t >= 0, abar[np.maximum(t, 0)], np.float32(end_abar))
    )


def vp_schedule(config: dict, timesteps, end_abar: float, **extra):
    """The `paddiff.sampling.Schedule` of a "vp" sampler that visits the integer `timesteps`
    (descending) and ends at `end_abar`; `extra` are the sampler's own per-step arrays."""
    from paddiff.sampling import Schedule

    timesteps = check_in_range(np.asarray(timesteps, dtype=np.int64), config)
    return Schedule(
        sigmas=vp_sigmas(config, np.append(timesteps, -1), end_abar),
        timesteps=timesteps,
        init_sigma=1.0,  # a vp sample at pure noise has unit variance
        train_sigmas=train_sigmas_for(config),  # finite at zero SNR, for looking sigmas up
        extra=extra,
    )


def abar_of_sigma(sigma) -> np.float32:
    """abar = 1 / (sigma^2 + 1) as float32. For the sigmas of `vp_sigmas` this is the training
    schedule's own float32 abar wherever 1 - abar is small (elsewhere within two ulps), so a
    sampler can do diffusers' float32 arithmetic in abar where its rounding shows: 1 - abar / abar'
    cancels near sigma = 0, and a sampler agrees with diffusers there only by cancelling alike."""
    return np.float32(1 / (1 + np.float64(sigma) ** 2))
