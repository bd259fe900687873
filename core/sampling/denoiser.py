"""The x0-denoiser: the network wrapped once into `x0 = model(x, sigma)`.

Everything that turns a noise-prediction network into "the clean latents at this noise level"
happens here and nowhere else (Karras et al. 2022, "Elucidating the Design Space", sec. 5):

- classifier-free guidance (Ho & Salimans 2022): the network runs with and without the prompt
  in one call, and the output is uncond + g * (cond - uncond);
- input scaling: the network was trained on variance-preserving inputs, so a "ve" sample
  x0 + sigma * noise is divided by sqrt(sigma^2 + 1) first (a "vp" sample already is one);
- the sigma -> network timestep map of the run's schedule;
- the prediction type: epsilon (the noise), v (Salimans & Ho 2022, v = alpha noise - s x0) or
  sample (x0 itself), converted to x0.

Arithmetic is float32, written as diffusers writes it, so samplers built on this agree with
diffusers' schedulers to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

F32 = np.float32
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def vp_coefficients(sigma):
    """(alpha, s) of a noise level: alpha = 1 / sqrt(sigma^2 + 1), s = sigma * alpha; at
    sigma = inf (zero terminal SNR) they are 0 and 1."""
    sigma = np.asarray(sigma, dtype=F32)
    alpha = F32(1) / np.sqrt(sigma**2 + F32(1))
    with np.errstate(invalid="ignore"):
        s = np.where(np.isinf(sigma), F32(1), sigma * alpha).astype(F32)
    return alpha, s[()] if s.ndim == 0 else s


def to_x0(output, x, sigma, prediction_type: str, space: str):
    """The clean latents predicted by a network `output` for the sample x at `sigma`."""
    if prediction_type == "sample":
        return output
    if space == "ve":  # x = x0 + sigma noise; the network saw x / sqrt(sigma^2 + 1)
        if prediction_type == "epsilon":
            return x - sigma * output
        if prediction_type == "v_prediction":
            return output * (-sigma / np.sqrt(sigma**2 + 1)) + x / (sigma**2 + 1)
    else:  # x = alpha x0 + s noise, what the network saw
        alpha, s = vp_coefficients(sigma)
        if prediction_type == "epsilon":
            with np.errstate(divide="ignore", invalid="ignore"):
                return (x - s * output) / alpha
        if prediction_type == "v_prediction":
            return alpha * x - s * output
    raise ValueError(
        f"unsupported prediction_type {prediction_type!r}; expected one of "
        + ", ".join(PREDICTION_TYPES)
    )


class GuidedNetwork:
    """network(x_in, t) for a batch of images, with classifier-free guidance.

    cond[i] / uncond[i] are image i's prompt embeddings (uncond is None without guidance);
    `extra` (inpainting UNets) are channels appended to the input: mask and masked-image
    latents. Images go through the denoiser `batch_size` at a time (None: all at once), and
    only images whose embeddings have the same shape share a call (long prompts differ).
    `control` (a `paddiff.control.ControlGuidance`) adds control nets' residuals to each call.
    """

    def __init__(
        self,
        denoiser,
        cond,
        uncond=None,
        guidance_scale=1.0,
        extra=None,
        batch_size=1,
        control=None,
    ):
        self.denoiser = denoiser
        self.cond, self.uncond = list(cond), None if uncond is None else list(uncond)
        self.guidance_scale = F32(guidance_scale)
        self.extra = extra
        self.batch_size = batch_size
        self.control = control

    def __call__(self, x_in: np.ndarray, t) -> np.ndarray:
        plain = x_in  # what a control net reads: no inpainting channels
        if self.extra is not None:
            x_in = np.concatenate([x_in, self.extra], axis=1)
        outputs = [
            self._group_output(x_in[group], t, group, plain[group]) for group in self._groups()
        ]
        return np.concatenate(outputs).astype(F32)

    def _group_output(self, x_in, t, group: list[int], plain) -> np.ndarray:
        conds = [self.cond[i] for i in group]
        if self.uncond is not None:  # one call holding [unconditional; conditional]
            x_in, conds = np.concatenate([x_in, x_in]), [self.uncond[i] for i in group] + conds
        conditioning = np.concatenate(conds)
        residuals = {}
        if self.control is not None:
            residuals = self.control(plain, t, conditioning, group, self.uncond is not None)
        output = np.asarray(self.denoiser(x_in, t, conditioning, **residuals), dtype=F32)
        if self.uncond is None:
            return output
        uncond, cond = output[: len(group)], output[len(group) :]
        return uncond + self.guidance_scale * (cond - uncond)

    def _groups(self):
        limit = self.batch_size or len(self.cond)
        group: list[int] = []
        for i, cond in enumerate(self.cond):
            first = group[0] if group else None
            if group and (
                len(group) == limit
                or cond.shape != self.cond[first].shape
                or (self.uncond is not None and self.uncond[i].shape != self.uncond[first].shape)
            ):
                yield group
                group = []
            group.append(i)
        if group:
            yield group


class X0Denoiser:
    """model(x, sigma) -> x0, for a sampler working in `space` ("ve" or "vp").

    network:         network(x_in, t) -> output, e.g. a `GuidedNetwork`.
    prediction_type: what the network's output means.
    timestep_of:     sigma -> network timestep (the schedule's `timestep_lookup()`).
    """

    def __init__(
        self,
        network: Callable,
        prediction_type: str,
        timestep_of: Callable[[float], float],
        space: str,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"unsupported prediction_type {prediction_type!r}; expected one of "
                + ", ".join(PREDICTION_TYPES)
            )
        self.network = network
        self.prediction_type = prediction_type
        self.timestep_of = timestep_of
        self.space = space
        self.calls = 0

    def __call__(self, x: np.ndarray, sigma, timestep=None) -> np.ndarray:
        """x0 for the sample x at `sigma`; the network timestep is the schedule's for that
        sigma unless given (points between the schedule's, such as DPM2's midpoints)."""
        sigma = F32(sigma)
        t = self.timestep_of(sigma) if timestep is None else timestep
        x = np.asarray(x, dtype=F32)
        x_in = x if self.space == "vp" else (x / np.sqrt(sigma**2 + 1)).astype(F32)
        output = self.network(x_in, t)
        self.calls += 1
        return np.asarray(to_x0(output, x, sigma, self.prediction_type, self.space), dtype=F32)
