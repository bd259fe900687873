"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework"), the B(h) variants
bh1 / bh2: a multistep predictor (UniP-p, Algorithm 2) whose result is refined by a corrector
(UniC-p, Algorithm 1) once the model has been evaluated there, at no extra model call. Both
solve a small linear system (eq. 7-8) for the weights rho of the divided differences D1 of
earlier model outputs, taken as data predictions x0 (predict_x0, the default) or as noise.
WebUI names: "UniPC" (and "UniPC Karras" with use_karras_sigmas)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules, solver
from paddiff.plugins.schedulers.thresholding import clip_or_threshold
from paddiff.sampling import Sampler, Schedule
from paddiff.sampling.denoiser import F32

DEFAULTS = {
    **solver.SOLVER_DEFAULTS,
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


def unipc_schedule(config: dict, steps: int) -> Schedule:
    """The config's integer timesteps, or Karras / exponential sigmas over the training range
    (timesteps rounded for Karras); then 0 or, with "sigma_min", the smallest sigma (of the
    respaced schedule when there is one, as diffusers does)."""
    schedules.check_steps(config, steps)
    train = schedules.train_sigmas_for(config)
    timesteps = schedules.solver_timesteps(
        config["timestep_spacing"], steps, config["num_train_timesteps"], config["steps_offset"]
    )
    respaced = solver.respaced_sigmas(config, train, steps)
    final = solver.final_sigma(config, train)
    if respaced is None:
        sigmas = schedules.interpolate_sigmas(timesteps, train)
    else:
        sigmas, timesteps = respaced
        if config["use_karras_sigmas"]:
            timesteps = timesteps.round()
        if config["final_sigmas_type"] == "sigma_min":
            final = float(np.float32(sigmas[-1]))
    return solver.solver_schedule(timesteps, sigmas, final, train)


def weights_system(rks, hh, order: int, solver_type: str):
    """The matrix R (powers of the step ratios r_k) and right-hand side b of eq. 7, with
    B(h) = hh (bh1) or expm1(hh) (bh2); returns (R, b, h phi_1(h) = expm1(hh), B(h))."""
    h_phi_1 = np.expm1(hh)
    h_phi_k = h_phi_1 / hh - F32(1.0)
    B_h = hh if solver_type == "bh1" else np.expm1(hh)
    R, b, factorial = [], [], 1
    for k in range(1, order + 1):
        R.append(rks ** (k - 1))
        b.append(h_phi_k * factorial / B_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - F32(1.0) / factorial
    return np.array(R, dtype=F32), np.array(b, dtype=F32), h_phi_1, B_h


def unipc_update(x, i, outputs, order, coefficients, options, corrector_output=None):
    """x at sigmas[i] to sigmas[i + 1], given the converted model outputs at sigmas[i],
    sigmas[i - 1], ... (`outputs`, newest last): the predictor UniP-p, or with
    `corrector_output` (the output at sigmas[i + 1]) the corrector UniC-p."""
    alpha, s, lam = coefficients
    h = lam[i + 1] - lam[i]
    m0 = outputs[-1]
    rks, d1s = [], []  # step ratios r_k and divided differences of older outputs
    for k in range(1, order):
        rk = (lam[i - k] - lam[i]) / h
        rks.append(rk)
        d1s.append((outputs[-(k + 1)] - m0) / rk)
    rks = np.array([*rks, F32(1.0)], dtype=F32)
    hh = -h if options["predict_x0"] else h
    R, b, h_phi_1, B_h = weights_system(rks, hh, order, options["solver_type"])
    if options["predict_x0"]:
        x_t, scale = s[i + 1] / s[i] * x - alpha[i + 1] * h_phi_1 * m0, alpha[i + 1]
    else:
        x_t, scale = alpha[i + 1] / alpha[i] * x - s[i + 1] * h_phi_1 * m0, s[i + 1]
    if corrector_output is None:
        if not d1s:
            return x_t
        rhos = np.array([0.5], F32) if order == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
        return x_t - scale * B_h * sum(F32(r) * d for r, d in zip(rhos, d1s, strict=True))
    rhos = np.array([0.5], F32) if order == 1 else np.linalg.solve(R, b)
    residual = sum(F32(r) * d for r, d in zip(rhos[:-1], d1s, strict=True)) if d1s else 0
    return x_t - scale * B_h * (residual + rhos[-1] * (corrector_output - m0))


def sample_unipc(model, x, sigmas, *, noise, callback, start=0, **options):
    """UniPC, orders 1-3; x is in VP form. The corrector refines the previous step from the
    sample it started at, as diffusers does (so it replaces what `callback` returned for it)."""
    steps, max_order = len(sigmas) - 1, options["solver_order"]
    coefficients = alpha, s, _ = solver.vp(sigmas)
    outputs = []  # converted model outputs (x0, or noise) of the steps run so far, newest last
    last_x, last_order = None, 1  # where the previous prediction started, and its order
    for i in range(start, steps):
        x0 = clip_or_threshold(model(x, sigmas[i]), options)
        with np.errstate(divide="ignore", invalid="ignore"):  # the final step has s = 0
            # noise prediction from x = alpha x0 + s noise (thresholding acts through x0)
            output = x0 if options["predict_x0"] else (x - alpha[i] * x0) / s[i]
            if last_x is not None and i - 1 not in options["disable_corrector"]:
                x = unipc_update(last_x, i - 1, outputs, last_order, coefficients, options, output)
            outputs = [*outputs, output][-max_order:]
            # lower orders for the last steps, counted on the whole schedule (as diffusers);
            # warm-up: no higher than the outputs at hand
            order = min(max_order, steps - i) if options["lower_order_final"] else max_order
            last_x, last_order = x, min(order, len(outputs))
            x = unipc_update(x, i, outputs, last_order, coefficients, options)
        x = callback(i, x)
    return x


UniPCMultistepScheduler = Sampler(
    name="UniPCMultistepScheduler",
    sample=sample_unipc,
    schedule=unipc_schedule,
    defaults=DEFAULTS,
    space="vp",
    check=solver.checker("UniPCMultistepScheduler", CHOICES),
)
