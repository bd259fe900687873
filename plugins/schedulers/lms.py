"""Linear multistep sampler (k-diffusion's sample_lms): the slope (x - x0) / sigma of up to four
previous steps is extrapolated with a Lagrange polynomial in sigma and integrated exactly over
the next interval (Adams-Bashforth in sigma)."""

from __future__ import annotations

import math

import numpy as np
from paddiff.plugins.schedulers import prediction
from paddiff.plugins.schedulers.base import BETA_DEFAULTS, F32, SigmaScheduler, as_f32

MAX_ORDER = 4


def lms_coefficient(sigmas: np.ndarray, i: int, order: int, k: int) -> float:
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


class LMSDiscreteScheduler(SigmaScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    }

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        timesteps, sigmas = self._spaced_sigmas(num_inference_steps)
        self.sigmas = np.append(sigmas, 0.0).astype(F32)
        self.timesteps = timesteps.astype(F32)
        self.num_inference_steps = num_inference_steps
        self.slopes: list[np.ndarray] = []  # newest last
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        i = self._index(timestep)
        sigma = self.sigmas[i]
        sample = as_f32(sample)
        x0 = prediction.ve_to_x0(
            as_f32(model_output), sample, sigma, self.config["prediction_type"]
        )
        self.slopes = [*self.slopes, (sample - x0) / sigma][-MAX_ORDER:]
        order = len(self.slopes)  # i + 1 up to 4 in a full run; fewer when started mid-schedule
        prev = sample
        for k, slope in enumerate(reversed(self.slopes[-order:])):
            prev = prev + lms_coefficient(self.sigmas, i, order, k) * slope
        return self.output(prev, x0)
