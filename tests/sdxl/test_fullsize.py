"""An SDXL-size base model (random weights, benchmarks/make_fullsize_sdxl.py) loaded and run
for one step at 512x512 within this machine's memory. Slow and on demand:

    .venv/bin/python benchmarks/make_fullsize_sdxl.py /path/to/sdxl-fullsize
    PADDIFF_SDXL_FULLSIZE_DIR=/path/to/sdxl-fullsize flock /work/bigmem.lock \\
        .venv/bin/python -m pytest -m slow -s tests/sdxl/test_fullsize.py

It prints the peak resident memory (the process's, from getrusage) after loading and after
the step.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest

MEMORY_LIMIT_GIB = 20.0  # of the machine's 24 GiB


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


NEEDED_GIB = 16.0  # float32 networks: UNet 10.3 GB, text encoders 3.3 GB, VAE 0.3 GB, + work


def available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


@pytest.fixture
def fullsize() -> Path:
    folder = os.environ.get("PADDIFF_SDXL_FULLSIZE_DIR")
    if not folder or not (Path(folder) / "model_index.json").is_file():
        pytest.skip("set PADDIFF_SDXL_FULLSIZE_DIR to benchmarks/make_fullsize_sdxl.py's output")
    if available_gib() < NEEDED_GIB:  # rather than push other processes out of memory
        pytest.skip(f"needs {NEEDED_GIB:g} GiB available, the machine has {available_gib():.1f}")
    return Path(folder)


@pytest.mark.slow
@pytest.mark.parametrize("size", [512])
def test_fullsize_sdxl_one_step(fullsize, size):
    import paddiff

    start = time.perf_counter()
    # dynamic graph: exporting a program would hold a second copy of the UNet while it runs
    pipe = paddiff.load_pipeline(fullsize, execution="dynamic", safety_filters=[])
    loaded = time.perf_counter()
    print(f"\nload: {loaded - start:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")
    result = pipe.text_to_image(
        "a lighthouse at dusk",
        steps=1,
        guidance_scale=5.0,
        width=size,
        height=size,
        seed=1,
        progress=False,
    )
    print(
        f"one step at {size}x{size} (guidance, batch 2) + decode: "
        f"{time.perf_counter() - loaded:.1f} s, peak RSS {peak_rss_gib():.2f} GiB"
    )
    image = np.asarray(result.images[0])
    assert image.shape == (size, size, 3)
    assert peak_rss_gib() < MEMORY_LIMIT_GIB
