"""Sampling: the x0-denoiser wrapper, the sampler plugin form, and the adapter for schedulers
written to the diffusers-style protocol.

    model = X0Denoiser(...)                       one wrapper: CFG, input scaling, prediction type
    plan = plan_sampling(scheduler, steps, strength)   a sampler (either form) set up for one call
    x = plan.initial(noise)  or  plan.noised(image_latents, noise)
    x = plan.sample(model, x, noise=..., callback=...)

See docs/architecture.md for the whole flow and docs/plugins.md for writing a sampler.
"""

from paddiff.sampling.denoiser import X0Denoiser, to_x0
from paddiff.sampling.plan import Plan, plan_sampling
from paddiff.sampling.sampler import ConfiguredSampler, Sampler, Schedule

__all__ = [
    "ConfiguredSampler",
    "Plan",
    "Sampler",
    "Schedule",
    "X0Denoiser",
    "plan_sampling",
    "to_x0",
]
