"""Small NumPy components for testing the pipeline loop without Paddle or model weights.

They implement the five interfaces with a few lines of arithmetic each, and count their calls,
so tests can check what the loop asks of them (batch sizes, cache use, draw order).
"""

from __future__ import annotations

import numpy as np
from paddiff.interfaces import (
    VAE,
    Denoiser,
    SafetyFilter,
    Scheduler,
    SchedulerOutput,
    TextEncoder,
    Verdict,
)

BOS, EOS, PAD = 1, 2, 0


class ToyTextEncoder(TextEncoder):
    """One token per space-separated word; embeddings from a fixed random table."""

    max_length = 8
    hidden_size = 4

    def __init__(self):
        self.table = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
        self.encoded: list[str] = []  # every prompt passed to encode, in order

    @classmethod
    def from_pretrained(cls, path, **options):
        return cls()

    def tokenize(self, prompts):
        rows = []
        for prompt in prompts:
            words = [3 + sum(map(ord, w)) % 97 for w in prompt.split()]
            ids = [BOS, *words[: self.max_length - 2], EOS]
            rows.append(ids + [PAD] * (self.max_length - len(ids)))
        return np.array(rows, dtype=np.int64)

    def encode(self, prompts):
        self.encoded.extend(prompts)
        vectors = self.table[self.tokenize(prompts)]
        steps = np.arange(1, self.max_length + 1, dtype=np.float32)[None, :, None]
        return (np.cumsum(vectors, axis=1) / steps).astype(np.float32)


class ToyDenoiser(Denoiser):
    """A smooth function of latents, timestep and conditioning; records each call's batch."""

    out_channels = 4
    prediction_type = "epsilon"
    sample_size = 4  # 32x32 pixels with the toy VAE

    def __init__(self, in_channels: int = 4):
        self.in_channels = in_channels
        self.calls: list[tuple[tuple, tuple]] = []  # (latents shape, conditioning shape)
        self.inputs: list[np.ndarray] = []

    @classmethod
    def from_pretrained(cls, path, **options):
        return cls()

    def __call__(self, latents, timestep, conditioning):
        assert latents.dtype == np.float32 and latents.shape[1] == self.in_channels
        self.calls.append((latents.shape, conditioning.shape))
        self.inputs.append(latents)
        context = conditioning.mean(axis=(1, 2))[:, None, None, None]
        out = np.tanh(0.5 * latents[:, :4] + context + 0.001 * float(timestep))
        if self.in_channels > 4:
            out = out + 0.1 * latents[:, 4:5] - 0.05 * latents[:, 5:9]
        return out.astype(np.float32)


class ToyVAE(VAE):
    """8x8 average pooling down, nearest upsampling and tanh up; posterior noise of 0.1."""

    scaling_factor = 0.5
    downsample_factor = 8
    latent_channels = 4

    def __init__(self):
        self.decoded_batches: list[int] = []

    @classmethod
    def from_pretrained(cls, path, **options):
        return cls()

    def encode(self, images, generator=None):
        n, c, h, w = images.shape
        pooled = images.reshape(n, c, h // 8, 8, w // 8, 8).mean(axis=(3, 5))
        mean = np.concatenate([pooled, pooled.mean(axis=1, keepdims=True)], axis=1)
        if generator is None:
            return mean.astype(np.float32)
        return (mean + 0.1 * generator.randn(mean.shape)).astype(np.float32)

    def decode(self, latents):
        self.decoded_batches.append(len(latents))
        up = latents[:, :3].repeat(8, axis=2).repeat(8, axis=3)
        return np.tanh(0.5 * up).astype(np.float32)


class ToyScheduler(Scheduler):
    """An Euler-like step with ancestral noise (so it uses the generator)."""

    order = 1
    init_noise_sigma = 1.0
    defaults = {"num_train_timesteps": 1000, "noise": 0.05, "step_size": 0.2}

    def __init__(self, config):
        self.config = {**self.defaults, **{k: config[k] for k in config if k in self.defaults}}
        self.timesteps = np.zeros(0)

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def set_timesteps(self, num_inference_steps):
        last = self.config["num_train_timesteps"] - 1
        self.timesteps = np.linspace(last, 0, num_inference_steps).round().astype(np.int64)

    def scale_model_input(self, sample, timestep):
        return sample * np.float32(0.9)

    def step(self, model_output, timestep, sample, generator=None):
        prev = sample - np.float32(self.config["step_size"]) * model_output
        if self.config["noise"]:
            prev = prev + np.float32(self.config["noise"]) * generator.randn(sample.shape)
        return SchedulerOutput(prev.astype(np.float32))

    def add_noise(self, original, noise, timesteps):
        keep = (
            1.0 - float(np.asarray(timesteps).reshape(-1)[0]) / self.config["num_train_timesteps"]
        )
        return (original * np.sqrt(keep) + noise * np.sqrt(1 - keep)).astype(np.float32)


class ToyQuietScheduler(ToyScheduler):
    """The same with a larger step and no noise."""

    def step(self, model_output, timestep, sample, generator=None):
        return SchedulerOutput((sample - np.float32(0.3) * model_output).astype(np.float32))


class ToyWordFilter(SafetyFilter):
    """Blocks prompts containing a word; blocks images whose mean is above a threshold."""

    def __init__(self, word="forbidden", brightness=2.0):
        self.word, self.brightness = word, brightness

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def check_prompt(self, text):
        if self.word in text.split():
            return Verdict(False, reason="listed word", matched=self.word, filter="toy")
        return Verdict(True, filter="toy")

    def check_images(self, images):
        return [
            Verdict(bool(np.asarray(im).mean() / 255 <= self.brightness), filter="toy")
            for im in images
        ]


def toy_pipeline(in_channels: int = 4, **options):
    from paddiff.pipeline import Pipeline

    return Pipeline(
        ToyTextEncoder(),
        ToyDenoiser(in_channels),
        ToyVAE(),
        ToyScheduler({}),
        model_name="toy",
        **options,
    )
