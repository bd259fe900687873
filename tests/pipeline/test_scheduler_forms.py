"""Schedulers of either form run through the pipeline alike: a package written against the
round-1 scheduler protocol (tests/plugins/paddiff-legacy-heun, stateful, two network calls per
step, written independently of the built-ins) gives the latents that the built-in sampler
function of the same algorithm gives, in text-to-image and image-to-image.

Latents are compared, not pixels: the fixture models are random, so their latents grow large
and the tiny VAE turns float32 rounding into visible pixel differences."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff import registry

from support.pipeline_fixtures import fixture_pipeline

SETTINGS = dict(steps=5, guidance_scale=6.0, seed=11, progress=False)


@pytest.fixture(scope="module")
def pipe():
    return fixture_pipeline("sd1")


def legacy_heun(plugin_path, pipe):
    entry = registry.Registry(paths=plugin_path).get("schedulers", "legacy-heun")
    return entry.from_config(dict(pipe.scheduler.config))


def builtin_heun(pipe):
    """The built-in Heun on the legacy package's schedule (timesteps spaced over the whole
    range; the fixture model's own config says "leading")."""
    entry = registry.get("schedulers", "HeunDiscreteScheduler")
    return entry.from_config({**pipe.scheduler.config, "timestep_spacing": "linspace"})


def run(generate, *args, **settings):
    """(result, latents after each step) of one call."""
    steps = []
    result = generate(*args, callback=lambda info: steps.append(info.latents.copy()), **settings)
    return result, steps


def assert_close(a, b):
    worst = np.abs(a - b).max() / (1 + np.abs(b).max())
    assert worst <= 1e-5, f"latents differ by {worst:.2e} of their scale"


def test_round_one_protocol_package_matches_the_builtin_sampler(plugin_path, pipe):
    legacy, legacy_steps = run(
        pipe.text_to_image, "a red cat", scheduler=legacy_heun(plugin_path, pipe), **SETTINGS
    )
    builtin, builtin_steps = run(
        pipe.text_to_image, "a red cat", scheduler=builtin_heun(pipe), **SETTINGS
    )
    assert len(legacy_steps) == SETTINGS["steps"], "one callback per step asked for"
    for mine, theirs in zip(legacy_steps, builtin_steps, strict=True):
        assert_close(mine, theirs)
    assert legacy.settings[0]["scheduler"] == "LegacyHeunScheduler"
    assert builtin.settings[0]["sampler"] == "Heun"


def test_round_one_protocol_package_in_image_to_image(plugin_path, pipe):
    image = pipe.text_to_image("a red cat", **SETTINGS).images[0]
    final = {}
    for name, choice in {
        "legacy": legacy_heun(plugin_path, pipe),
        "builtin": builtin_heun(pipe),
    }.items():
        _, steps = run(pipe.image_to_image, "a blue cat", image, 0.6, scheduler=choice, **SETTINGS)
        assert len(steps) == 3  # the last int(5 * 0.6) steps run
        final[name] = steps[-1]
    assert_close(final["legacy"], final["builtin"])
