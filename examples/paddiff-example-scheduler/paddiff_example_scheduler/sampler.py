"""The same Euler method as ExampleEulerScheduler, in the sampler-function form (the simpler
form for new plugins): a pure schedule function, a sampler function, and one `Sampler` object
that the entry point names. paddiff's x0-denoiser does the input scaling, classifier-free
guidance and prediction-type conversion, so the sampler only sees clean-latent estimates.
"""

from __future__ import annotations

import numpy as np
from paddiff.sampling import Sampler, Schedule

DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012}


def schedule(config: dict, steps: int) -> Schedule:
    """`steps` timesteps evenly spaced from T - 1 down to 0, their sigmas, then sigma 0."""
    n = config["num_train_timesteps"]
    # scaled_linear: betas are linear in sqrt space (the schedule Stable Diffusion trained on)
    betas = np.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    train_sigmas = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    timesteps = np.linspace(n - 1, 0, steps)
    sigmas = np.append(np.interp(timesteps, np.arange(n), train_sigmas), 0.0)
    return Schedule(
        sigmas=sigmas.astype(np.float32),
        timesteps=timesteps.astype(np.float32),
        init_sigma=float(sigmas[0]),  # x = x0 + sigma * noise starts as sigma_max * noise
        train_sigmas=train_sigmas,
    )


def sample_euler(model, x, sigmas, *, noise, callback, start=0, **options):
    """Euler steps along dx/dsigma = (x - x0) / sigma (Karras et al. 2022, Algorithm 2)."""
    for i in range(start, len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        x = callback(i, x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i]))
    return x


example_euler = Sampler(
    name="example-euler-fn", sample=sample_euler, schedule=schedule, defaults=DEFAULTS
)
