"""Clipping and thresholding of the predicted clean sample x0, as the DDPM-family samplers and
the solvers offer it (diffusers' `clip_sample` and `thresholding` options). Prediction-type
conversion is not here: paddiff.sampling.X0Denoiser does it once for every sampler."""

from __future__ import annotations

import numpy as np

#: The options, with diffusers' defaults for DDPM and DDIM (clipping on); a sampler that
#: defaults differently (LCM: off) overrides `clip_sample`.
CLIP_DEFAULTS = {
    "clip_sample": True,  # clip x0 to [-clip_sample_range, clip_sample_range]
    "clip_sample_range": 1.0,
    "thresholding": False,  # Imagen's dynamic thresholding of x0
    "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0,
}


def dynamic_threshold(x0: np.ndarray, ratio: float, max_value: float) -> np.ndarray:
    """Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3): per sample, clip x0 to the
    `ratio` quantile s of |x0| (kept in [1, max_value]) and divide by s."""
    flat = x0.reshape(x0.shape[0], -1)
    s = np.quantile(np.abs(flat), ratio, axis=1).astype(x0.dtype)
    s = np.clip(s, 1, max_value)[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x0.shape)


def clip_or_threshold(x0: np.ndarray, config: dict) -> np.ndarray:
    """Apply `thresholding` or `clip_sample` as the config asks (thresholding wins)."""
    if config.get("thresholding"):
        return dynamic_threshold(
            x0, config["dynamic_thresholding_ratio"], config["sample_max_value"]
        )
    if config.get("clip_sample"):
        limit = config["clip_sample_range"]
        return np.clip(x0, -limit, limit)
    return x0
