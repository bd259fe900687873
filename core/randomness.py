"""Seeded randomness that reproduces a run exactly, on any machine.

Every random draw in generation (initial latents, ancestral-sampler noise, VAE posterior samples)
comes from a `Generator`. It wraps NumPy's PCG64, whose stream is defined by the seed alone, so the
same seed gives bit-identical noise whatever the batch, thread count or Paddle build. A batch is
generated with one generator per image, so image i of a batch equals the same seed run alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class Generator:
    """Standard-normal noise from a seed."""

    def __init__(self, seed: int):
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))

    def randn(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        return self._rng.standard_normal(shape, dtype=np.float64).astype(dtype)

    def __call__(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """The same as randn: a generator is a sampler's `noise` callable too."""
        return self.randn(shape, dtype)


class RecordedNoise(Generator):
    """Replays given arrays in order, so tests can feed the reference implementation's noise."""

    def __init__(self, arrays: Iterable[np.ndarray]):
        self.seed = -1
        self._arrays = iter(arrays)

    def randn(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        try:
            array = np.asarray(next(self._arrays))
        except StopIteration:
            raise RuntimeError("RecordedNoise ran out of recorded arrays") from None
        if array.shape != tuple(shape):
            raise ValueError(f"recorded noise has shape {array.shape}, expected {tuple(shape)}")
        return array.astype(dtype)


class BatchNoise:
    """Noise for a batch of images, each row drawn from that image's own generator, so image i
    of a batch gets exactly the noise the same seed gets alone. Usable as a sampler's `noise`
    callable and as a protocol scheduler's `generator` (it has `randn`)."""

    def __init__(self, generators: list[Generator]):
        self.generators = list(generators)

    def randn(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        if shape[0] != len(self.generators):
            raise ValueError(
                f"noise for {shape[0]} rows asked of {len(self.generators)} generators"
            )
        row = (1, *shape[1:])
        return np.concatenate([g.randn(row, dtype) for g in self.generators])

    def __call__(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        return self.randn(shape, dtype)
