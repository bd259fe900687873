"""Properties of every built-in scheduler over many step counts (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from paddiff import registry
from paddiff.randomness import Generator
from paddiff.sampling import plan_sampling

from support.scheduler_helpers import (
    SD_CONFIG,
    RecordingNetwork,
    final_sigma,
    gaussian_data_denoiser,
    point_mass_denoiser,
    run_sampler,
)

BUILT_IN = sorted(r.name for r in registry.Registry(third_party=False).list("schedulers"))
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
@given(
    steps=st.one_of(st.integers(1, 60), st.integers(61, 1000)),
    betas=st.sampled_from(["scaled_linear", "linear", "squaredcos_cap_v2"]),
    spacing=st.sampled_from([None, "leading", "trailing", "linspace"]),
)
@example(steps=4, betas="squaredcos_cap_v2", spacing=None)  # ancestral sigma_down rounds < 0
@example(steps=1000, betas="scaled_linear", spacing=None)  # repeated solver timesteps
@example(steps=998, betas="scaled_linear", spacing="trailing")  # diffusers reaches t = -1
def test_any_step_count_gives_ordered_timesteps_and_finite_samples(name, steps, betas, spacing):
    options = {"beta_schedule": betas, **({"timestep_spacing": spacing} if spacing else {})}
    scheduler = make(name, **options)
    try:
        plan_sampling(scheduler, steps)
    except ValueError as error:  # leading spacing cannot place every training step
        assert spacing == "leading" and steps >= 999 and "at most" in str(error)
        return
    network = RecordingNetwork(gaussian_data_denoiser)
    sample, plan, _ = run_sampler(scheduler, steps, Generator(steps).randn(SHAPE), network=network)
    timesteps = np.asarray(network.timesteps, dtype=np.float64)
    # multistep solvers on integer timesteps cannot take more distinct steps than T - 1
    assert len(plan.timesteps) >= min(steps, CONFIG["num_train_timesteps"] - 1)
    assert np.all(np.diff(timesteps) <= 1e-3)  # non-increasing, up to float32 rounding
    assert timesteps.min() >= -1e-3 and timesteps.max() <= CONFIG["num_train_timesteps"]
    _, counts = np.unique(np.round(timesteps, 2), return_counts=True)
    assert counts.max() <= 2  # only second-order stages revisit a timestep
    # (not "of unit scale": one 2-step Heun or DPM2 run legitimately overshoots several-fold)
    assert np.isfinite(sample).all()


@pytest.mark.parametrize("name", BUILT_IN)
@PROPERTY
@given(steps=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_perfect_denoiser_recovers_the_clean_sample(name, steps, seed):
    """add_noise at the first timestep, then a denoiser that knows the answer (all data is the
    one clean sample, so its noise prediction is exact): every step's x0 estimate is the clean
    sample, so a run that ends at sigma 0 ends on it, and one that stops at a small final sigma
    (DEIS; PNDM, whose last step is to abar_0) ends that close to it."""
    scheduler = make(name, set_alpha_to_one=True)
    rng = Generator(seed)
    clean, noise = rng.randn(SHAPE), rng.randn(SHAPE)
    network = RecordingNetwork(point_mass_denoiser(clean.astype(np.float64)))
    result, plan, _ = run_sampler(scheduler, steps, noise, network=network, image=clean)
    tolerance = 1e-4 + 5 * final_sigma(plan)  # LCM ends on c_out x0 + c_skip x_t: ~6e-5 off
    assert np.abs(result - clean).max() <= tolerance * (1 + np.abs(clean).max())
