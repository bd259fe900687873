"""PNDM / PLMS (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"):
a linear multistep (Adams-Bashforth, up to 4th order) combination of the last noise predictions,
pushed through the DDIM-style transfer step of eq. 11. Without `skip_prk_steps` the first three
steps are pseudo Runge-Kutta steps (4 model calls each); Stable Diffusion skips them and warms up
with one pseudo improved-Euler step instead.

The stepping follows the call counter, as in the paper's Algorithm: which combination a call
makes depends on how many calls came before it in this run."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.schedulers import schedules
from paddiff.plugins.schedulers.base import BETA_DEFAULTS, BaseScheduler, as_f32
from paddiff.plugins.schedulers.schedules import check_in_range

# Adams-Bashforth weights for 1..4 stored noise predictions, newest first
PLMS_WEIGHTS = {1: (1,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12)}
PLMS_WEIGHTS_4 = (55, -59, 37, -9)  # / 24
RK4_WEIGHTS = (1 / 6, 1 / 3, 1 / 3, 1 / 6)


class PNDMScheduler(BaseScheduler):
    DEFAULTS = {
        **BETA_DEFAULTS,
        "skip_prk_steps": False,
        "set_alpha_to_one": False,
        "timestep_spacing": "leading",
        "steps_offset": 0,
    }
    PREDICTION_TYPES = ("epsilon", "v_prediction")

    def set_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        c, n = self.config, num_inference_steps
        T = c["num_train_timesteps"]
        if c["timestep_spacing"] == "linspace":
            base = np.linspace(0, T - 1, n).round().astype(np.int64)
        elif c["timestep_spacing"] == "leading":
            base = np.arange(n) * (T // n) + c["steps_offset"]
        else:
            base = (schedules.trailing_points(T, T, n).round()[::-1] - 1).astype(np.int64)
        # base is ascending here
        if c["skip_prk_steps"]:
            # the second timestep is visited twice: the warm-up step's corrector call
            self.prk_timesteps = np.zeros(0, dtype=np.int64)
            plms = np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1]
        else:
            if n < 4:
                raise ValueError("PNDM with pseudo Runge-Kutta steps needs at least 4 steps")
            half = T // n // 2
            prk = np.repeat(base[-4:], 2) + np.tile([0, half], 4)
            self.prk_timesteps = np.repeat(prk[:-1], 2)[1:-1][::-1]
            plms = base[:-3][::-1]
        timesteps = np.concatenate([self.prk_timesteps, plms]).astype(np.int64)
        self.timesteps = check_in_range(timesteps, c)
        self.num_inference_steps = n
        self.ets: list[np.ndarray] = []  # stored noise predictions, newest last
        self.counter = 0
        self._rk_sum = 0
        self._start = None
        self._reset()

    def step(self, model_output, timestep, sample, generator=None):
        self._index(timestep)
        model_output, sample = as_f32(model_output), as_f32(sample)
        if self.counter < len(self.prk_timesteps):
            prev = self._step_prk(model_output, int(timestep), sample)
        else:
            prev = self._step_plms(model_output, int(timestep), sample)
        self.counter += 1
        return self.output(prev)

    def _step_prk(self, eps, t, sample):
        """One of the four calls of a pseudo Runge-Kutta step (Liu et al. eq. 13)."""
        stage = self.counter % 4
        half = self.config["num_train_timesteps"] // self.num_inference_steps // 2
        prev_t = t - (0 if self.counter % 2 else half)
        t = int(self.prk_timesteps[self.counter // 4 * 4])
        if stage == 0:
            self.ets.append(eps)
            self._start = sample
        if stage < 3:
            self._rk_sum = self._rk_sum + RK4_WEIGHTS[stage] * eps
        else:
            eps = self._rk_sum + RK4_WEIGHTS[3] * eps
            self._rk_sum = 0
        return self._transfer(self._start, t, prev_t, eps)

    def _step_plms(self, eps, t, sample):
        """A linear multistep step (Liu et al. eq. 12), or the warm-up's two calls. The warm-up
        needs the repeated second timestep, so a run started mid-schedule (image-to-image)
        starts with plain first- and second-order steps instead (diffusers would skip a step)."""
        skip = self.config["num_train_timesteps"] // self.num_inference_steps
        prev_t = t - skip
        if self.counter == 1 and self.config["skip_prk_steps"] and self.step_index == 1:
            # warm-up corrector: redo the first step with the mean of its two predictions
            prev_t, t = t, t + skip
            eps = (eps + self.ets[-1]) / 2
            sample, self._start = self._start, None
            return self._transfer(sample, t, prev_t, eps)
        self.ets = [*self.ets[-3:], eps]
        if len(self.ets) == 1:
            self._start = sample
        elif len(self.ets) < 4:
            eps = sum(
                w * e for w, e in zip(PLMS_WEIGHTS[len(self.ets)], reversed(self.ets), strict=True)
            )
        else:
            eps = sum(w * e for w, e in zip(PLMS_WEIGHTS_4, reversed(self.ets), strict=True)) / 24
        return self._transfer(sample, t, prev_t, eps)

    def _transfer(self, sample, t, prev_t, eps):
        """Liu et al. eq. 11: move x_t to x_prev_t along the predicted noise (DDIM-like)."""
        final = 1.0 if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        abar = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else np.float32(final)
        if self.config["prediction_type"] == "v_prediction":
            eps = np.sqrt(abar) * eps + np.sqrt(1 - abar) * sample
        denominator = abar * np.sqrt(1 - abar_prev) + np.sqrt(abar * (1 - abar) * abar_prev)
        return np.sqrt(abar_prev / abar) * sample - (abar_prev - abar) * eps / denominator
