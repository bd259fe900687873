"""Properties of every built-in scheduler over many step counts (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paddiff import registry
from paddiff.randomness import Generator
from scheduler_helpers import SD_CONFIG, denoise

BUILT_IN = sorted(
    r.name for r in registry.Registry(third_party=False).list("schedulers")
)
# LCM picks its steps from the grid it was distilled on; a 1000-point grid allows any count.
# steps_offset=1 with "leading" spacing cannot take all 1000 steps (the last would be t=1000).
CONFIG = {**SD_CONFIG, "original_inference_steps": 1000, "steps_offset": 0}
SHAPE = (1, 4, 4, 4)
PROPERTY = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make(name, **options):
    return registry.get("schedulers", name).from_config({**CONFIG, **options})


@pytest.mark.parametrize("name", BUILT_IN)
@PROPERTY
@given(steps=st.one_of(st.integers(1, 60), st.integers(61, 1000)))
def test_any_step_count_gives_ordered_timesteps_and_finite_samples(name, steps):
    scheduler = make(name)
    scheduler.set_timesteps(steps)
    timesteps = np.asarray(scheduler.timesteps, dtype=np.float64)
    # multistep solvers on integer timesteps cannot take more distinct steps than T - 1
    assert len(timesteps) >= min(steps, CONFIG["num_train_timesteps"] - 1)
    assert np.all(np.diff(timesteps) <= 1e-3)  # non-increasing, up to float32 rounding
    assert timesteps.min() >= -1e-3 and timesteps.max() <= CONFIG["num_train_timesteps"]
    _, counts = np.unique(np.round(timesteps, 2), return_counts=True)
    assert counts.max() <= 2  # only second-order stages revisit a timestep
    sample = Generator(steps).randn(SHAPE) * np.float32(scheduler.init_noise_sigma)
    sample = denoise(scheduler, sample, Generator(0))
    assert np.isfinite(sample).all()


@pytest.mark.parametrize("name", BUILT_IN)
@PROPERTY
@given(steps=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_perfect_denoiser_recovers_the_clean_sample(name, steps, seed):
    """add_noise at the first timestep, then a denoiser that knows the answer (it predicts x0,
    prediction_type="sample"): every step's estimate is exact, so a run that ends at sigma 0
    ends on the clean sample; one that ends at a small final sigma ends that close to it."""
    try:
        scheduler = make(name, prediction_type="sample", set_alpha_to_one=True)
    except ValueError:
        pytest.skip(f"{name} does not take prediction_type='sample'")
    scheduler.set_timesteps(steps)
    rng = Generator(seed)
    clean, noise = rng.randn(SHAPE), rng.randn(SHAPE)
    noisy = scheduler.add_noise(clean, noise, np.asarray(scheduler.timesteps[:1]))
    result = denoise(scheduler, noisy, Generator(seed + 1), model=lambda x, t: clean)
    sigmas = getattr(scheduler, "sigmas", np.zeros(1))
    final_sigma = float(sigmas[-1])  # 0, or sigma_min for solvers that stop short of 0
    tolerance = 2e-4 + 5 * final_sigma
    assert np.abs(result - clean).max() <= tolerance * (1 + np.abs(clean).max())
