"""What every registered scheduler promises the pipeline, built-in or third-party.

Parametrised over everything registered, plus the example plugin package; no test here names a
particular scheduler."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff import registry
from paddiff.interfaces import SchedulerOutput
from paddiff.randomness import Generator
from paddiff.scheduler_names import create_scheduler

from support.scheduler_helpers import MODEL_CONFIGS, SD_CONFIG, denoise, point_mass_denoiser

EXAMPLE = "example-euler"
NAMES = sorted(set(registry.Registry().names("schedulers")) | {EXAMPLE})
SHAPE = (2, 4, 8, 8)


@pytest.fixture()
def plugins(plugin_path):
    return registry.Registry(paths=plugin_path)


def start(scheduler, seed=0):
    return Generator(seed).randn(SHAPE) * np.float32(scheduler.init_noise_sigma)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 4, 20])
def test_denoising_loop_from_a_model_folder_config(plugins, name, steps):
    scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
    scheduler.set_timesteps(steps)
    timesteps = np.asarray(scheduler.timesteps)
    assert timesteps.ndim == 1 and len(timesteps) >= steps
    # (up to float32 rounding: DPM2 ancestral's midpoints coincide with the next timestep)
    assert np.all(np.diff(timesteps.astype(np.float64)) <= 1e-3), "timesteps must not increase"
    _, counts = np.unique(timesteps, return_counts=True)
    assert counts.max() <= 2, "a timestep is visited at most twice (second-order stages)"
    assert isinstance(scheduler.order, int) and scheduler.order >= 1
    assert float(scheduler.init_noise_sigma) > 0
    seen = []
    sample = denoise(scheduler, start(scheduler), Generator(1), on_step=lambda *a: seen.append(a))
    assert len(seen) == len(timesteps)
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
    scheduler.set_timesteps(12)
    assert np.isfinite(denoise(scheduler, start(scheduler), Generator(1))).all()


@pytest.mark.parametrize("name", NAMES)
def test_step_returns_scheduler_output_in_float32(plugins, name):
    scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
    scheduler.set_timesteps(10)
    sample = start(scheduler)
    t = scheduler.timesteps[0]
    scaled = scheduler.scale_model_input(sample, t)
    assert scaled.shape == SHAPE and scaled.dtype == np.float32
    out = scheduler.step(np.zeros(SHAPE, np.float32), t, sample, generator=Generator(0))
    assert isinstance(out, SchedulerOutput)
    assert out.prev_sample.shape == SHAPE and out.prev_sample.dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(plugins, name):
    cls = plugins.get("schedulers", name)
    scheduler = cls.from_config(dict(SD_CONFIG))
    assert "_class_name" not in scheduler.config
    assert cls.from_config(scheduler.config).config == scheduler.config


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_reproduces_a_run_exactly(plugins, name):
    runs = []
    for _ in range(2):
        scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
        scheduler.set_timesteps(8)
        runs.append(denoise(scheduler, start(scheduler, seed=3), Generator(4)))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("name", NAMES)
def test_set_timesteps_restarts_a_run(plugins, name):
    scheduler = plugins.get("schedulers", name).from_config(dict(SD_CONFIG))
    results = []
    for _ in range(2):
        scheduler.set_timesteps(6)
        results.append(denoise(scheduler, start(scheduler, seed=5), Generator(6)))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name", NAMES)
def test_chosen_by_name_through_the_pipeline_path(plugins, name):
    """create_scheduler is how the pipeline switches schedulers per call."""
    scheduler = create_scheduler(name, dict(SD_CONFIG), registry=plugins)
    assert type(scheduler) is plugins.get("schedulers", name)
    scheduler.set_timesteps(5)
    assert np.isfinite(denoise(scheduler, start(scheduler), Generator(2))).all()


@pytest.mark.parametrize("name", NAMES)
def test_image_to_image_starts_mid_schedule(plugins, name):
    """Image-to-image noises the clean latents to a timestep inside the schedule and denoises
    from there; with a denoiser that knows the answer the run must land on the clean latents."""
    config = {**SD_CONFIG, "set_alpha_to_one": True}  # end at a clean sample, not at abar_0
    scheduler = plugins.get("schedulers", name).from_config(config)
    scheduler.set_timesteps(12)
    first = 2 * (len(scheduler.timesteps) // 4)  # an even position: a full step of any order
    clean, noise = Generator(7).randn(SHAPE), Generator(8).randn(SHAPE)
    start_t = np.asarray(scheduler.timesteps[first : first + 1])
    sample = scheduler.add_noise(clean, noise, start_t)
    model = point_mass_denoiser(clean.astype(np.float64))
    generator = Generator(9)
    for t in scheduler.timesteps[first:]:
        output = model(scheduler.scale_model_input(sample, t), float(t))
        sample = scheduler.step(output, t, sample, generator=generator).prev_sample
    final_sigma = float(getattr(scheduler, "sigmas", np.zeros(1))[-1])
    assert np.abs(sample - clean).max() <= (1e-4 + 5 * final_sigma) * (1 + np.abs(clean).max())
