"""The sampler plugin form: a sampling algorithm as a plain function plus a pure schedule.

A sampler function has the k-diffusion shape:

    def sample_euler(model, x, sigmas, *, noise, callback, start=0, **options):
        for i in range(start, len(sigmas) - 1):
            denoised = model(x, sigmas[i])            # the clean latents predicted at sigma
            x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
            callback(i, x)
        return x

`model(x, sigma)` is the x0-denoiser (paddiff.sampling.X0Denoiser): classifier-free guidance,
input scaling and the network's prediction type are handled there, once. Multistep history lives
in the function's local variables. `noise(shape)` draws standard-normal noise (each image of a
batch from its own seeded generator). `start` is the first step to run: image-to-image and
inpainting begin part-way down the schedule. `options` are the sampler's config (its
`defaults` updated with the model folder's scheduler_config.json and the user's choices) plus
any arrays the schedule adds (`Schedule.extra`).

`space` says what x is: "ve" (x = x0 + sigma * noise, the k-diffusion form) or "vp"
(x = alpha * x0 + s * noise with alpha = 1 / sqrt(sigma^2 + 1), s = sigma * alpha, the form
DDIM-like samplers and the network itself use; it stays finite at sigma = inf, the
zero-terminal-SNR start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPACES = ("ve", "vp")


@dataclass(frozen=True)
class Schedule:
    """Where a run goes: noise levels, and the network timestep at each.

    sigmas:     float32, descending, one per step plus the end (usually 0).
    timesteps:  the network's timestep at sigmas[i], one per step.
    init_sigma: scale of the initial noise, in the sampler's space (sigmas[0] for most "ve"
                samplers, 1 for "vp" ones; diffusers' "leading" spacing uses sqrt(sigma^2 + 1)).
    train_sigmas: the training schedule's sigma per timestep, ascending (for sigmas not listed).
    extra:      arrays a sampler needs besides sigmas (e.g. DDIM's step targets, DPM2's
                midpoints and their timesteps); passed to the sampler function as keyword
                options. A sampler that calls the network at a sigma not in `sigmas` may give
                its timestep: model(x, sigma, timestep).
    """

    sigmas: np.ndarray
    timesteps: np.ndarray
    init_sigma: float
    train_sigmas: np.ndarray
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def timestep_lookup(self) -> Callable[[float], float]:
        """sigma -> network timestep: exact for listed sigmas, else log-sigma interpolation in
        the training schedule (the inverse of how sigmas were made from timesteps)."""
        listed = zip(self.sigmas[: self.steps], self.timesteps, strict=True)
        table = {float(np.float32(s)): t for s, t in listed}
        log_train = np.log(np.maximum(self.train_sigmas.astype(np.float64), 1e-10))

        def timestep(sigma) -> float:
            key = float(np.float32(sigma))
            if key in table:
                return table[key]
            log_sigma = np.log(max(key, 1e-10))
            return float(np.interp(log_sigma, log_train, np.arange(len(log_train))))

        return timestep


@dataclass(frozen=True)
class Sampler:
    """A sampling algorithm in the function form (what `paddiff.schedulers` entry points name).

    name:      what listings and PNG parameters call it.
    sample:    the sampler function (see the module docstring).
    schedule:  schedule(config, steps) -> Schedule, a pure function of the resolved config.
    defaults:  every config option the sampler reads, with its default (diffusers' defaults
               for the class of the same name, for built-ins).
    space:     "ve" or "vp".
    check:     check(config) raising ValueError for a config the sampler cannot run.
    """

    name: str
    sample: Callable[..., np.ndarray]
    schedule: Callable[[Mapping[str, Any], int], Schedule]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    space: str = "ve"
    check: Callable[[Mapping[str, Any]], None] | None = None

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"sampler {self.name!r}: space must be one of {SPACES}")

    def from_config(self, config: Mapping[str, Any]) -> ConfiguredSampler:
        """This sampler with a model folder's scheduler config: keys it does not read are
        ignored (they belong to other schedulers), so any scheduler_config.json works."""
        resolved = {**self.defaults, **{k: v for k, v in config.items() if k in self.defaults}}
        if self.check is not None:  # sees the given keys too, so options it lacks are refused
            self.check({**config, **resolved})
        return ConfiguredSampler(self, resolved)


@dataclass(frozen=True)
class ConfiguredSampler:
    """A sampler and its resolved config: what a pipeline holds as its scheduler."""

    sampler: Sampler
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.sampler.name

    def schedule(self, steps: int) -> Schedule:
        return self.sampler.schedule(self.config, steps)


def scheduler_class_name(scheduler) -> str:
    """The registry name a scheduler of either form goes by: a configured sampler's name, or a
    protocol scheduler's class name (what `_class_name` in scheduler_config.json holds)."""
    if isinstance(scheduler, ConfiguredSampler):
        return scheduler.name
    return type(scheduler).__name__
