"""What the denoiser predicted, converted once: to the clean sample x0, or to the noise.

Prediction types (the `prediction_type` config key, as in diffusers):
  epsilon       the noise that was added;
  v_prediction  v = alpha * noise - s * x0 (Salimans & Ho 2022, "Progressive Distillation");
  sample        x0 itself.
With x = alpha * x0 + s * noise, each can be turned into the others. `alpha` and `s` are the VP
coefficients (sqrt(abar) and sqrt(1 - abar)); for k-diffusion-style samplers, whose x is
x0 + sigma * noise and whose model input was divided by sqrt(sigma^2 + 1), see `ve_to_x0`.
"""

from __future__ import annotations

import numpy as np

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def check_prediction_type(prediction_type: str, supported=PREDICTION_TYPES) -> None:
    if prediction_type not in supported:
        raise ValueError(
            f"unsupported prediction_type {prediction_type!r}; this scheduler supports "
            + ", ".join(supported)
        )


def to_x0(model_output, sample, alpha, s, prediction_type: str):
    """The clean sample x0 predicted from a VP sample x = alpha * x0 + s * noise."""
    if prediction_type == "epsilon":
        return (sample - s * model_output) / alpha
    if prediction_type == "v_prediction":
        return alpha * sample - s * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def to_epsilon(model_output, sample, alpha, s, prediction_type: str):
    """The noise predicted from a VP sample x = alpha * x0 + s * noise."""
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        return alpha * model_output + s * sample
    if prediction_type == "sample":
        return (sample - alpha * model_output) / s
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def ve_to_x0(model_output, sample, sigma, prediction_type: str):
    """x0 predicted from a VE sample x = x0 + sigma * noise, whose model input was scaled by
    1 / sqrt(sigma^2 + 1) (so v-prediction's alpha and s are those of that scaled input)."""
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    if prediction_type == "v_prediction":
        return model_output * (-sigma / np.sqrt(sigma**2 + 1)) + sample / (sigma**2 + 1)
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


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
