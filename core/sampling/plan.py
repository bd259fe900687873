"""One sampling run, set up the same way for both scheduler forms.

`plan_sampling(scheduler, steps, strength)` takes what the registry made from a scheduler name:
a `ConfiguredSampler` (the function form) or an instance of a class written to the
diffusers-style `paddiff.interfaces.Scheduler` protocol (the form of round 1 and of many
third-party packages), and returns a `Plan` with one interface:

    plan.initial(noise)              start latents from pure noise (text-to-image)
    plan.noised(x0, noise, i)        clean latents noised to the level step i starts from
    plan.sample(network, prediction_type, x, noise=, callback=)
                                     run the steps; callback(i, x) -> x after each step

`strength` < 1 skips the first steps (image-to-image starts from a partly noised image), as
diffusers does: the last int(steps * strength) of a `steps`-step schedule run. `eta` (DDIM's
stochasticity) given per call replaces the scheduler config's; None keeps the config's.
"""

from __future__ import annotations

import inspect
from typing import Protocol

import numpy as np
from paddiff.sampling.denoiser import F32, X0Denoiser, vp_coefficients
from paddiff.sampling.sampler import ConfiguredSampler


class Plan(Protocol):
    steps: int  # the steps the user asked for
    start: int  # the first step run (> 0 for image-to-image)
    timesteps: np.ndarray  # the network timestep at the start of each step run

    def initial(self, noise: np.ndarray) -> np.ndarray: ...
    def noised(self, x0: np.ndarray, noise: np.ndarray, step: int) -> np.ndarray: ...
    def sample(self, network, prediction_type, x, *, noise, callback) -> np.ndarray: ...


def plan_sampling(scheduler, steps: int, strength: float = 1.0, eta: float | None = None) -> Plan:
    skipped = steps - min(int(steps * strength), steps)
    if isinstance(scheduler, ConfiguredSampler):
        return FunctionPlan(scheduler, steps, skipped, eta)
    return ProtocolPlan(scheduler, steps, skipped, eta)


def _identity(i, x):
    return x


class FunctionPlan:
    """A sampler function over its schedule."""

    def __init__(self, setup: ConfiguredSampler, steps: int, start: int, eta: float):
        self.setup, self.steps, self.start = setup, steps, start
        self.schedule = setup.schedule(steps)
        self.timesteps = np.asarray(self.schedule.timesteps)[start:]
        self.options = {**setup.config, **self.schedule.extra}
        if eta is not None and "eta" in setup.config:  # DDIM's stochasticity, per call
            self.options["eta"] = eta

    def initial(self, noise):
        return (noise * F32(self.schedule.init_sigma)).astype(F32)

    def noised(self, x0, noise, step: int):
        """x0 noised to sigmas[step] (forward diffusion); past the last step, x0 itself."""
        sigma = F32(self.schedule.sigmas[step]) if step < self.schedule.steps else F32(0)
        if self.setup.sampler.space == "ve":
            return (x0 + noise * sigma).astype(F32)
        alpha, s = vp_coefficients(sigma)
        return (alpha * x0 + s * noise).astype(F32)

    def sample(self, network, prediction_type, x, *, noise, callback=None):
        model = X0Denoiser(
            network, prediction_type, self.schedule.timestep_lookup(), self.setup.sampler.space
        )
        return self.setup.sampler.sample(
            model,
            np.asarray(x, dtype=F32),
            np.asarray(self.schedule.sigmas, dtype=F32),
            noise=noise,
            callback=callback or _identity,
            start=self.start,
            **self.options,
        )


class ProtocolPlan:
    """The adapter for schedulers written to the diffusers-style protocol: they keep their
    own state and convert the network's output themselves (by their config's
    prediction_type), so they get the guided network output, not x0.

    Such a scheduler may make more network calls than steps (Heun's second stage, PNDM's
    warm-up) and says only how many on average (`order`); calls are shared out over the steps
    evenly, so the callback still comes once per step the user asked for."""

    def __init__(self, scheduler, steps: int, skipped: int, eta: float):
        self.scheduler, self.steps, self.start = scheduler, steps, skipped
        scheduler.set_timesteps(steps)
        order = int(getattr(scheduler, "order", 1))
        if skipped and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(skipped * order)
        self.calls = np.asarray(scheduler.timesteps)[skipped * order :]
        # (a solver may drop repeated timesteps and so take fewer steps than asked for)
        self.run_steps = min(steps - skipped, len(self.calls))
        self.timesteps = self.calls[[self._first_call(j) for j in range(self.run_steps)]]
        # a per-call eta (DDIM) when given, as diffusers' pipelines pass it
        self.step_options = (
            {"eta": eta} if eta is not None and _accepts(scheduler.step, "eta") else {}
        )

    def _first_call(self, run_step: int) -> int:
        """Index in `calls` of the first network call of the run's step `run_step`."""
        return -(-run_step * len(self.calls) // self.run_steps)  # ceiling

    def initial(self, noise):
        return (noise * F32(self.scheduler.init_noise_sigma)).astype(F32)

    def noised(self, x0, noise, step: int):
        if step - self.start >= self.run_steps:
            return x0
        t = self.calls[self._first_call(step - self.start)]
        return np.asarray(self.scheduler.add_noise(x0, noise, np.asarray([t])), F32)

    def sample(self, network, prediction_type, x, *, noise, callback=None):
        callback = callback or _identity
        run_steps, reported = self.run_steps, 0
        for k, t in enumerate(self.calls):
            x_in = np.asarray(self.scheduler.scale_model_input(x, t), dtype=F32)
            output = network(x_in, t)
            result = self.scheduler.step(output, t, x, generator=noise, **self.step_options)
            x = np.asarray(_prev_sample(result), dtype=F32)
            done = (k + 1) * run_steps // len(self.calls)
            if done > reported:  # step `start + done - 1` is complete
                x = callback(self.start + done - 1, x)
                reported = done
        return x


def _accepts(method, name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _prev_sample(result):
    return result.prev_sample if hasattr(result, "prev_sample") else result[0]
