"""What every registered scheduler promises the pipeline, built-in or third-party, in either
form (a sampler function or a class written to the diffusers-style protocol): each runs through
paddiff.sampling.plan_sampling, the pipeline's own path.

Parametrised over everything registered, plus the example plugin package; no test here names a
particular scheduler."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff import registry
from paddiff.randomness import BatchNoise, Generator
from paddiff.sampling import ConfiguredSampler
from paddiff.scheduler_names import create_scheduler

from support.scheduler_helpers import (
    MODEL_CONFIGS,
    SD_CONFIG,
    RecordingNetwork,
    final_sigma,
    point_mass_denoiser,
    run_sampler,
)

#: the example package's two forms, and a package written against the round-1 protocol
THIRD_PARTY = {"example-euler", "example-euler-fn", "legacy-heun"}
NAMES = sorted(set(registry.Registry().names("schedulers")) | THIRD_PARTY)
SHAPE = (2, 4, 8, 8)


@pytest.fixture()
def plugins(plugin_path):
    return registry.Registry(paths=plugin_path)


def noise(seed):
    return BatchNoise([Generator(seed * 100 + i) for i in range(SHAPE[0])])


def init(seed=0):
    return Generator(seed).randn(SHAPE)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 4, 20])
def test_denoising_loop_from_a_model_folder_config(plugins, name, steps):
    scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
    seen = []
    sample, plan, network = run_sampler(
        scheduler, steps, init(), noise(1), on_step=lambda i, x: seen.append(i)
    )
    assert seen == list(range(steps)), "one callback per step the user asked for, in order"
    assert len(plan.timesteps) == steps
    timesteps = np.asarray(network.timesteps)
    assert len(timesteps) >= steps
    # (up to float32 rounding: DPM2 ancestral's midpoints coincide with the next timestep)
    assert np.all(np.diff(timesteps) <= 1e-3), "timesteps must not increase"
    _, counts = np.unique(timesteps, return_counts=True)
    assert counts.max() <= 2, "a timestep is visited at most twice (second-order stages)"
    assert sample.shape == SHAPE and sample.dtype == np.float32
    assert np.isfinite(sample).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("model", sorted(MODEL_CONFIGS))
def test_any_scheduler_drives_any_model_folder(plugins, name, model):
    """A model folder's scheduler_config.json, whichever class it names, configures any
    scheduler: the model's own prediction type and schedule are kept."""
    scheduler = plugins.get("schedulers", name).from_config(dict(MODEL_CONFIGS[model]))
    for key in ("prediction_type", "beta_schedule"):
        if key in scheduler.config and key in MODEL_CONFIGS[model]:
            assert scheduler.config[key] == MODEL_CONFIGS[model][key]
    sample, _, _ = run_sampler(scheduler, 12, init(), noise(1))
    assert np.isfinite(sample).all()


@pytest.mark.parametrize("name", NAMES)
def test_start_latents_are_float32(plugins, name):
    from paddiff.sampling import plan_sampling

    plan = plan_sampling(plugins.get("schedulers", name).from_config(dict(SD_CONFIG)), 10, 0.5)
    for x in (plan.initial(init()), plan.noised(init(1), init(2), plan.start)):
        assert x.shape == SHAPE and x.dtype == np.float32 and np.isfinite(x).all()


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(plugins, name):
    entry = plugins.get("schedulers", name)
    scheduler = entry.from_config(dict(SD_CONFIG))
    assert "_class_name" not in scheduler.config
    assert entry.from_config(dict(scheduler.config)).config == scheduler.config


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_reproduces_a_run_exactly(plugins, name):
    runs = []
    for _ in range(2):
        scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
        runs.append(run_sampler(scheduler, 8, init(3), noise(4))[0])
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("name", NAMES)
def test_one_scheduler_object_runs_twice_alike(plugins, name):
    scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
    results = [run_sampler(scheduler, 6, init(5), noise(6))[0] for _ in range(2)]
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name", NAMES)
def test_chosen_by_name_through_the_pipeline_path(plugins, name):
    """create_scheduler is how the pipeline switches schedulers per call."""
    entry = plugins.get("schedulers", name)
    scheduler = create_scheduler(name, dict(SD_CONFIG), registry=plugins)
    if isinstance(scheduler, ConfiguredSampler):
        assert scheduler.sampler is entry
    else:
        assert type(scheduler) is entry
    assert np.isfinite(run_sampler(scheduler, 5, init(), noise(2))[0]).all()


@pytest.mark.parametrize("name", NAMES)
def test_image_to_image_starts_mid_schedule(plugins, name):
    """Image-to-image noises the clean latents to a step inside the schedule and denoises from
    there; with a denoiser that knows the answer the run must land on the clean latents."""
    config = {**SD_CONFIG, "set_alpha_to_one": True}  # end at a clean sample, not at abar_0
    scheduler = plugins.get("schedulers", name).from_config(config)
    clean = Generator(7).randn(SHAPE)
    network = RecordingNetwork(point_mass_denoiser(clean.astype(np.float64)))
    sample, plan, _ = run_sampler(
        scheduler, 12, init(8), noise(9), network=network, strength=0.5, image=clean
    )
    assert plan.start == 6 and len(plan.timesteps) == 6
    tolerance = 1e-4 + 5 * final_sigma(plan)
    assert np.abs(sample - clean).max() <= tolerance * (1 + np.abs(clean).max())
