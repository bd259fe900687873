"""What the performance benchmark measures: the same work for every framework.

Each worker (one per framework, each in its own Python environment) imports this file, builds
Stable Diffusion 1.5-sized networks with random weights (nothing is downloaded), times the
workloads below and prints one JSON line per result. Only the standard library and NumPy are
used here, so every environment can import it.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import numpy as np

# Stable Diffusion 1.5's component configs (diffusers field names), so every framework builds
# the same architecture.
UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}
CLIP_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}

# name -> (what it is, repeats after warm-up)
WORKLOADS = {
    "unet32": ("UNet step, 4x32x32 latents, batch 2 (256x256 with CFG)", 5),
    "unet64": ("UNet step, 4x64x64 latents, batch 2 (512x512 with CFG)", 3),
    "vae256": ("VAE decode to 256x256, batch 1", 5),
    "vae512": ("VAE decode to 512x512, batch 1", 3),
    "text": ("text encoding, 2 prompts x 77 tokens", 10),
    "e2e256": ("end to end: text + 20 DDIM steps with CFG + VAE decode, 256x256", 3),
}


def unet_inputs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((2, 4, size, size), dtype=np.float32),
        np.array([500.0, 500.0], np.float32),
        rng.standard_normal((2, 77, 768), dtype=np.float32),
    )


def token_ids() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 49407, size=(2, 77)).astype(np.int64)


def ddim_timesteps(steps: int = 20) -> list[int]:
    return list(range(999, -1, -1000 // steps))[:steps]


def time_it(fn, repeats: int) -> list[float]:
    fn()  # warm-up (and, for exported programs, the export itself)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def report(framework: str, workload: str, times: list[float], **extra) -> None:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {
        "framework": framework,
        "workload": workload,
        "median_s": statistics.median(times),
        "times_s": [round(t, 4) for t in times],
        "peak_rss_mb": round(peak_mb),
        **extra,
    }
    print(json.dumps(record), flush=True)


def selected(argv: list[str]) -> list[str]:
    names = argv[1:] or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        sys.exit(f"unknown workloads {unknown}; known: {list(WORKLOADS)}")
    return names
