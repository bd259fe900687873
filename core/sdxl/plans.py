"""Sampling plans that start or stop part-way, at a fraction of the training timesteps, as
diffusers' denoising_start / denoising_end do (base + refiner hand-off).

diffusers: cutoff = round(T - fraction * T) over the T training timesteps; a run ending there
takes the steps whose timestep is >= cutoff, a run starting there the steps whose timestep is
< cutoff. The schedule itself is the full `steps`-step one in both, so the two halves meet.
"""

from __future__ import annotations

import numpy as np
from paddiff.sampling import ConfiguredSampler
from paddiff.sampling.plan import FunctionPlan, ProtocolPlan, plan_sampling

TRAINING_TIMESTEPS = 1000  # used when a scheduler config does not say


def cutoff(scheduler, fraction: float) -> int:
    total = int(dict(scheduler.config).get("num_train_timesteps", TRAINING_TIMESTEPS))
    return int(round(total - fraction * total))


def starting_plan(scheduler, steps: int, denoising_start: float):
    """A plan over the full schedule whose first step is the first below the cutoff."""
    from paddiff.pipeline import _fresh

    full = plan_sampling(_fresh(scheduler), steps)
    below = int(
        np.sum(np.asarray(full.timesteps, dtype=np.float64) < cutoff(scheduler, denoising_start))
    )
    start = steps - below
    if below == 0:
        raise ValueError(
            f"denoising_start={denoising_start} leaves none of the {steps} steps to run"
        )
    if isinstance(scheduler, ConfiguredSampler):
        return FunctionPlan(_fresh(scheduler), steps, start, None)
    return ProtocolPlan(_fresh(scheduler), steps, start, None)


class _Stop(Exception):
    def __init__(self, latents):
        self.latents = latents


class EndingPlan:
    """`plan`, stopped after its steps whose timestep is >= the cutoff: the latents are those
    after the last such step (diffusers' loop ends there; the sampler's later steps, and any
    last-step special case, never run)."""

    def __init__(self, plan, end: int):
        self.plan, self.end = plan, end
        self.steps, self.start = plan.steps, plan.start
        self.timesteps = np.asarray(plan.timesteps)[: end - plan.start]

    def initial(self, noise):
        return self.plan.initial(noise)

    def noised(self, x0, noise, step: int):
        return self.plan.noised(x0, noise, step)

    def sample(self, network, prediction_type, x, *, noise, callback=None):
        def stopping(i, latents):
            if callback is not None:
                latents = callback(i, latents)
            if i + 1 >= self.end:
                raise _Stop(latents)
            return latents

        try:
            return self.plan.sample(network, prediction_type, x, noise=noise, callback=stopping)
        except _Stop as stop:
            return stop.latents


def ending_plan(plan, denoising_end: float):
    scheduler = getattr(plan, "scheduler", None) or plan.setup
    kept = np.asarray(plan.timesteps, dtype=np.float64) >= cutoff(scheduler, denoising_end)
    run = int(np.sum(kept))
    if run == 0:
        raise ValueError(f"denoising_end={denoising_end} leaves no step to run")
    return EndingPlan(plan, plan.start + run)
