"""Linear multistep sampler (k-diffusion's sample_lms, "LMS" in the WebUI; Karras et al. 2022
use it as a baseline): the slopes (x - x0) / sigma of up to four previous steps are fitted with a
Lagrange polynomial in sigma, which is integrated exactly over the next interval (an
Adams-Bashforth method in sigma)."""

from __future__ import annotations

import math

from paddiff.plugins.schedulers import euler, schedules
from paddiff.sampling import Sampler

MAX_ORDER = 4  # diffusers' step(order=4)

DEFAULTS = {
    **schedules.BETA_DEFAULTS,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "timestep_spacing": "linspace",
    "steps_offset": 0,
}


def lms_coefficient(sigmas, i: int, order: int, k: int) -> float:
    """Integral from sigmas[i] to sigmas[i+1] of the Lagrange basis polynomial that is 1 at
    sigmas[i-k] and 0 at the other nodes sigmas[i], ..., sigmas[i-order+1]. The polynomial has
    degree order - 1 <= 3, so two-point Gauss-Legendre quadrature integrates it exactly."""
    nodes = [float(sigmas[i - j]) for j in range(order) if j != k]
    centre = float(sigmas[i - k])

    def basis(tau: float) -> float:
        return math.prod((tau - node) / (centre - node) for node in nodes)

    a, b = float(sigmas[i]), float(sigmas[i + 1])
    middle, half = (a + b) / 2, (b - a) / 2
    offset = half / math.sqrt(3)
    return half * (basis(middle - offset) + basis(middle + offset))


def sample_lms(model, x, sigmas, *, noise, callback, start=0, **options):
    slopes = []  # newest last; fewer than MAX_ORDER at the start (and when started part-way)
    for i in range(start, len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        slopes = [*slopes, (x - denoised) / sigmas[i]][-MAX_ORDER:]
        for k, slope in enumerate(reversed(slopes)):
            x = x + lms_coefficient(sigmas, i, len(slopes), k) * slope
        x = callback(i, x)
    return x


LMSDiscreteScheduler = Sampler(
    name="LMSDiscreteScheduler",
    sample=sample_lms,
    schedule=euler.sigma_schedule,
    defaults=DEFAULTS,
    space="ve",
    check=schedules.checker("LMSDiscreteScheduler"),
)
