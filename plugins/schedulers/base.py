"""What every built-in scheduler shares: config resolution, step-index bookkeeping, noise.

A scheduler's config is a plain dict: the class's DEFAULTS (equal to diffusers' defaults for the
class of the same name) updated with the keys of the given config that the class knows; other
keys (`_class_name`, options of other schedulers) are ignored. So a model folder's
`scheduler_config.json` builds any scheduler, and `Other.from_config(s.config)` works.

Sample arithmetic is float32 with float32 coefficients, as diffusers does it, so results agree
to float32 rounding.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from paddiff.interfaces import Scheduler, SchedulerOutput
from paddiff.plugins.schedulers import schedules
from paddiff.randomness import Generator

F32 = np.float32

#: Options every scheduler here reads; subclasses add their own in DEFAULTS.
BETA_DEFAULTS = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
}


#: diffusers options that paddiff does not implement: a config that switches one on is refused
#: rather than silently sampled differently.
NOT_IMPLEMENTED = ("use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting", "shift_terminal")


class BaseScheduler(Scheduler):
    """Config handling and step bookkeeping; VP (DDPM-style) defaults for the rest."""

    DEFAULTS: ClassVar[dict[str, Any]] = BETA_DEFAULTS
    #: option -> allowed values, checked when the scheduler is made
    CHOICES: ClassVar[dict[str, tuple]] = {}
    #: prediction types this algorithm implements
    PREDICTION_TYPES: ClassVar[tuple[str, ...]] = ("epsilon", "v_prediction", "sample")
    order = 1
    init_noise_sigma = 1.0

    def __init__(self, **config: Any):
        switched_on = [key for key in NOT_IMPLEMENTED if config.get(key)]
        if switched_on:
            raise ValueError(
                f"{type(self).__name__}: paddiff does not implement {', '.join(switched_on)}"
            )
        self.config = {**self.DEFAULTS, **{k: v for k, v in config.items() if k in self.DEFAULTS}}
        self._check_options()
        self.alphas_cumprod = schedules.alphas_cumprod_from_config(self.config)
        self.timesteps = np.zeros(0, dtype=np.int64)
        self.num_inference_steps: int | None = None
        self.step_index: int | None = None

    @classmethod
    def from_config(cls, config: dict) -> BaseScheduler:
        return cls(**config)

    def _check_options(self) -> None:
        choices = {
            "beta_schedule": schedules.BETA_SCHEDULES,
            "timestep_spacing": schedules.TIMESTEP_SPACINGS,
            "prediction_type": self.PREDICTION_TYPES,
            "final_sigmas_type": ("zero", "sigma_min"),
            **self.CHOICES,
        }
        for key, allowed in choices.items():
            if key in self.config and self.config[key] not in allowed:
                raise ValueError(
                    f"{type(self).__name__}: {key}={self.config[key]!r} is not supported; "
                    f"expected one of {', '.join(map(repr, allowed))}"
                )
        if (
            sum(bool(self.config.get(k)) for k in ("use_karras_sigmas", "use_exponential_sigmas"))
            > 1
        ):
            raise ValueError("use_karras_sigmas and use_exponential_sigmas exclude each other")

    def _check_steps(self, num_inference_steps: int) -> None:
        if not 1 <= num_inference_steps <= self.config["num_train_timesteps"]:
            raise ValueError(
                f"num_inference_steps must be between 1 and num_train_timesteps "
                f"({self.config['num_train_timesteps']}), got {num_inference_steps}"
            )

    # -- where in the schedule are we ---------------------------------------------------------

    def index_for_timestep(self, timestep) -> int:
        """Position of `timestep` in `timesteps`. A value listed twice (second-order samplers)
        maps to its second entry, so a run that starts mid-schedule starts on a full step."""
        if self.num_inference_steps is None:
            raise RuntimeError(f"{type(self).__name__}: call set_timesteps before stepping")
        matches = np.flatnonzero(self.timesteps == timestep)
        if len(matches) == 0:
            raise ValueError(
                f"timestep {timestep!r} is not one of this scheduler's timesteps; pass values "
                "from scheduler.timesteps"
            )
        return int(matches[1] if len(matches) > 1 else matches[0])

    def _index(self, timestep) -> int:
        """The current step index: found from `timestep` on the first call of a run, then
        counted (each `step` adds one), since timesteps can repeat."""
        if self.step_index is None:
            self.step_index = self.index_for_timestep(timestep)
        return self.step_index

    def _reset(self) -> None:
        self.step_index = None

    # -- the protocol -----------------------------------------------------------------------

    def scale_model_input(self, sample: np.ndarray, timestep) -> np.ndarray:
        return sample

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timesteps) -> np.ndarray:
        """x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise, per batch entry."""
        abar = self.alphas_cumprod[np.asarray(timesteps, dtype=np.int64).reshape(-1)]
        abar = abar.reshape((-1,) + (1,) * (np.ndim(original) - 1))
        return (np.sqrt(abar) * original + np.sqrt(1 - abar) * noise).astype(F32)

    def output(self, prev_sample, pred_original_sample=None) -> SchedulerOutput:
        self.step_index = (self.step_index or 0) + 1
        x0 = None if pred_original_sample is None else np.asarray(pred_original_sample, F32)
        return SchedulerOutput(np.asarray(prev_sample, dtype=F32), x0)


def as_f32(array) -> np.ndarray:
    return np.asarray(array, dtype=F32)


def draw_noise(generator: Generator | None, shape) -> np.ndarray:
    """Standard-normal noise from the run's generator (fresh entropy when none is given)."""
    if generator is None:
        generator = Generator(int(np.random.SeedSequence().entropy % (2**63)))
    return generator.randn(tuple(shape))


def floor_zero_terminal_snr(scheduler: BaseScheduler) -> None:
    """With rescale_betas_zero_snr the last abar is 0, so sigma and log-SNR there are infinite;
    sigma-based samplers use 2**-24 instead, as diffusers does."""
    if scheduler.config.get("rescale_betas_zero_snr"):
        scheduler.alphas_cumprod[-1] = 2.0**-24


class SigmaScheduler(BaseScheduler):
    """k-diffusion-style samplers (Euler, Heun, LMS, DPM2): the sample is x0 + sigma * noise,
    and the model sees it divided by sqrt(sigma^2 + 1) (Karras et al. 2022, Table 1, VP)."""

    def __init__(self, **config: Any):
        super().__init__(**config)
        floor_zero_terminal_snr(self)
        self.train_sigmas = schedules.sigmas_from_alphas_cumprod(self.alphas_cumprod)
        self.sigmas = np.zeros(0, dtype=F32)

    @property
    def init_noise_sigma(self) -> float:
        sigma_max = float(self.sigmas.max()) if len(self.sigmas) else float(self.train_sigmas[-1])
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return sigma_max
        # "leading" starts below T - 1, where the sample is not pure noise
        return float(np.sqrt(sigma_max**2 + 1))

    def _spaced_sigmas(self, num_inference_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(timesteps, sigmas) for the config's spacing and sigma options, in float64, without
        the final sigma. Karras / exponential sigmas span the same range and map back to
        fractional timesteps."""
        c = self.config
        timesteps = schedules.spaced_timesteps(
            c["timestep_spacing"], num_inference_steps, c["num_train_timesteps"], c["steps_offset"]
        )
        timesteps = schedules.check_in_range(timesteps, c).astype(F32)
        sigmas = schedules.interpolate_sigmas(timesteps, self.train_sigmas)
        respace = self._respaced(sigmas, num_inference_steps)
        if respace is not None:
            sigmas = respace
            timesteps = schedules.sigma_to_timestep(sigmas, self.train_sigmas)
        return timesteps, sigmas

    def _respaced(self, sigmas: np.ndarray, n: int) -> np.ndarray | None:
        """Karras or exponential sigmas between the schedule's ends, or None to keep them."""
        c = self.config
        lo = c.get("sigma_min") or float(sigmas[-1])
        hi = c.get("sigma_max") or float(sigmas[0])
        if c.get("use_karras_sigmas"):
            return schedules.karras_sigmas(lo, hi, n)
        if c.get("use_exponential_sigmas"):
            return schedules.exponential_sigmas(lo, hi, n)
        return None

    def _sigma(self, timestep) -> np.float32:
        return self.sigmas[self._index(timestep)]

    def scale_model_input(self, sample: np.ndarray, timestep) -> np.ndarray:
        sigma = self._sigma(timestep)
        return (as_f32(sample) / np.sqrt(sigma**2 + 1)).astype(F32)

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timesteps) -> np.ndarray:
        """x = x0 + sigma * noise, with each timestep's sigma from the current schedule."""
        index = [self.index_for_timestep(t) for t in np.asarray(timesteps).reshape(-1)]
        sigma = self.sigmas[index].reshape((-1,) + (1,) * (np.ndim(original) - 1))
        return (as_f32(original) + as_f32(noise) * sigma).astype(F32)


#: Options of the DDPM-family schedulers that clip or threshold the predicted x0.
CLIP_DEFAULTS = {
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0,
}


def integer_timesteps(config: dict, num_inference_steps: int) -> np.ndarray:
    """The config's spacing rounded to whole training timesteps (DDPM, DDIM)."""
    spaced = schedules.spaced_timesteps(
        config["timestep_spacing"],
        num_inference_steps,
        config["num_train_timesteps"],
        config["steps_offset"],
    )
    return schedules.check_in_range(np.round(spaced).astype(np.int64), config)
