"""Calibration inputs: the UNet's real inputs, recorded while the float model generates.

The INT8 ranges must cover what the UNet sees in use: latents at every noise level of a
sampling run, with conditioning from real prompts (and the empty negative prompt of classifier-
free guidance). So calibration generates images with the float pipeline and records each UNet
call; random tensors would calibrate the ranges of inputs that never occur.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# The built-in calibration prompts: English and Chinese, varied subjects, styles and colours,
# like the prompts the bilingual embedded model and SD-class models are used with.
DEFAULT_PROMPTS = (
    "a red circle on a blue background",
    "蓝色背景上的一个红色圆形",
    "a yellow star on a purple background",
    "紫色背景上的一颗黄色星星",
    "a photograph of a mountain lake at sunrise, mist over the water",
    "日出时的山间湖泊，水面上有薄雾，摄影作品",
    "portrait of an old fisherman, oil painting, warm light",
    "一位老渔夫的肖像，油画，暖色调光线",
    "a city street at night in the rain, neon signs, cinematic",
    "雨夜的城市街道，霓虹灯，电影感",
    "a bowl of fruit on a wooden table, still life",
    "木桌上的一碗水果，静物画",
    "a cat sleeping on a windowsill, watercolor",
    "窗台上睡觉的猫，水彩画",
    "an ancient chinese pavilion in a snowy garden, ink painting",
    "雪中园林里的古代亭子，水墨画",
)


#: A model folder may carry its own calibration prompts (one per line), used when none are
#: given: the embedded model ships captions of its training grammar, because it can draw only
#: simple shapes and most of DEFAULT_PROMPTS ask for things it never learnt.
MODEL_PROMPTS_FILE = "calibration_prompts.txt"


def read_prompts(path: str | Path | None, model: str | Path | None = None) -> list[str]:
    """Prompts from a file (one per line, blank lines and #-comments skipped); without one,
    the model folder's `calibration_prompts.txt`, else the built-in list."""
    if path is None:
        own = Path(model) / MODEL_PROMPTS_FILE if model is not None else None
        if own is None or not own.is_file():
            return list(DEFAULT_PROMPTS)
        path = own
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration prompt file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts (one per line)")
    return prompts


def prompts_source(path: str | Path | None, model: str | Path) -> str:
    """Where `read_prompts(path, model)` takes its prompts from, for the report."""
    if path is not None:
        return str(path)
    if (Path(model) / MODEL_PROMPTS_FILE).is_file():
        return f"the model folder's {MODEL_PROMPTS_FILE}"
    return "the built-in list"


class RecordingDenoiser:
    """Stands in for the pipeline's denoiser: runs it and keeps a copy of every call's inputs."""

    def __init__(self, denoiser):
        self.wrapped = denoiser
        self.calls: list[list[np.ndarray]] = []

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def __call__(self, latents, timestep, conditioning):
        latents = np.asarray(latents, dtype=np.float32)
        batch = latents.shape[0]
        timesteps = np.broadcast_to(np.asarray(timestep, np.float32).reshape(-1), (batch,))
        self.calls.append(
            [latents.copy(), timesteps.copy(), np.asarray(conditioning, np.float32).copy()]
        )
        return self.wrapped(latents, timestep, conditioning)


def record_unet_inputs(pipe, prompts, *, steps, height, width, seed=0, guidance_scale=7.5):
    """Generate one image per prompt with `pipe` and return every UNet call's inputs
    ([latents, timesteps, conditioning] each)."""
    from paddiff.prompt_checks import PromptWordsWarning

    recorder = RecordingDenoiser(pipe.denoiser)
    pipe.denoiser = recorder
    try:
        with warnings.catch_warnings():
            # the built-in list is for any model: words a small model does not know are expected
            warnings.simplefilter("ignore", PromptWordsWarning)
            for i, prompt in enumerate(prompts):
                pipe.text_to_image(
                    prompt,
                    steps=steps,
                    height=height,
                    width=width,
                    seed=seed + i,
                    guidance_scale=guidance_scale,
                    progress=False,
                )
    finally:
        pipe.denoiser = recorder.wrapped
    return recorder.calls


def spread(calls: list, count: int) -> list:
    """`count` of the recorded calls, evenly spread over all prompts and steps."""
    if len(calls) <= count:
        return list(calls)
    picks = np.linspace(0, len(calls) - 1, count).round().astype(int)
    return [calls[i] for i in picks]
