"""The registry, exercised through real installed entry-point metadata (see conftest.plugin_site)."""

from __future__ import annotations

import sys

import pytest
from paddiff import registry
from paddiff.interfaces import Scheduler
from paddiff.registry import (
    BrokenPluginError,
    PluginConformanceError,
    Registry,
    UnknownPluginError,
)


def _record(reg: Registry, kind: str, qualified: str):
    return next(r for r in reg.list(kind) if r.qualified_name == qualified)


def test_discovery_lists_without_importing(plugin_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "paddiff_example_scheduler", raising=False)
    reg = Registry(paths=plugin_path)
    record = _record(reg, "schedulers", "paddiff-example-scheduler:example-euler")
    assert record.status == "available"
    assert record.target == "paddiff_example_scheduler:ExampleEulerScheduler"
    assert record.version == "0.1.0"
    # Listing read metadata only: neither the good nor the broken plugin modules were imported.
    assert "paddiff_example_scheduler" not in sys.modules
    assert "paddiff_test_plugins.raises" not in sys.modules


def test_lazy_load_on_first_use_and_cached(plugin_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "paddiff_example_scheduler", raising=False)
    reg = Registry(paths=plugin_path)
    cls = reg.get("schedulers", "example-euler")
    assert "paddiff_example_scheduler" in sys.modules
    assert cls.__name__ == "ExampleEulerScheduler" and issubclass(cls, Scheduler)
    assert reg.get("scheduler", "example-euler") is cls  # singular kind accepted, cached object
    assert _record(reg, "schedulers", "paddiff-example-scheduler:example-euler").status == "loaded"


def test_loaded_example_scheduler_works(plugin_path):
    import numpy as np

    scheduler = Registry(paths=plugin_path).get("schedulers", "example-euler").from_config({})
    scheduler.set_timesteps(10)
    x = np.ones((1, 4, 8, 8), np.float32) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = scheduler.scale_model_input(x, t)  # a stand-in model: predicts its input
        x = scheduler.step(eps, t, x).prev_sample
    assert x.shape == (1, 4, 8, 8) and np.isfinite(x).all()


def test_plugin_that_raises_on_import_is_isolated(plugin_path):
    reg = Registry(paths=plugin_path)
    with pytest.raises(BrokenPluginError) as info:
        reg.get("schedulers", "raises-on-import")
    message = str(info.value)
    assert "paddiff-test-plugins" in message
    assert "RuntimeError" in message and "fails on import" in message
    record = _record(reg, "schedulers", "paddiff-test-plugins:raises-on-import")
    assert record.status == "broken" and "RuntimeError" in record.error
    # Asking again gives the same error, and everything else still works.
    with pytest.raises(BrokenPluginError):
        reg.get("schedulers", "raises-on-import")
    assert reg.get("schedulers", "example-euler").__name__ == "ExampleEulerScheduler"
    assert reg.get("safety_filters", "word-filter").__name__ == "WordFilter"


def test_conformance_check_rejects_incomplete_class(plugin_path):
    reg = Registry(paths=plugin_path)
    with pytest.raises(PluginConformanceError) as info:
        reg.get("schedulers", "incomplete")
    message = str(info.value)
    assert "missing step, add_noise" in message and "Scheduler" in message
    assert "paddiff-test-plugins" in message
    with pytest.raises(PluginConformanceError, match="expected a class"):
        reg.get("schedulers", "not-a-class")
    assert _record(reg, "schedulers", "paddiff-test-plugins:incomplete").status == "broken"


def test_conformance_check_reports_abstract_methods(plugin_path):
    from paddiff_test_plugins.incomplete import AbstractLeftover

    assert registry.check_conformance("schedulers", AbstractLeftover) == [
        "abstract methods not implemented: step"
    ]
    with pytest.raises(PluginConformanceError, match="step"):
        Registry(paths=plugin_path).register("schedulers", "leftover", AbstractLeftover)


def test_unknown_name_lists_names_and_closest_match(plugin_path):
    reg = Registry(paths=plugin_path)
    with pytest.raises(UnknownPluginError) as info:
        reg.get("schedulers", "example-eulr")
    message = str(info.value)
    assert "Did you mean 'example-euler'?" in message
    assert "paddiff-example-scheduler:example-euler" in message
    assert "paddiff-test-plugins:incomplete" in message


def test_unknown_name_when_nothing_is_installed(tmp_path):
    with pytest.raises(UnknownPluginError, match="No plugins of this kind are installed"):
        Registry(paths=[str(tmp_path)]).get("denoisers", "UNet2DConditionModel")


def test_name_clash_resolves_by_distribution_order_and_qualified_name_selects(plugin_path):
    reg = Registry(paths=plugin_path)
    winner = reg.get("schedulers", "example-euler")
    assert winner.__name__ == "ExampleEulerScheduler"
    loser = _record(reg, "schedulers", "paddiff-test-plugins:example-euler")
    assert loser.status == "shadowed" and loser.shadowed_by == "paddiff-example-scheduler"
    chosen = reg.get("schedulers", "paddiff-test-plugins:example-euler")
    assert chosen.__name__ == "ClashingScheduler"
    # Distribution names are normalised (PEP 503) when selecting.
    assert reg.get("schedulers", "Paddiff_Test.Plugins:example-euler") is chosen
    with pytest.raises(UnknownPluginError):
        reg.get("schedulers", "paddiff-test-plugins:no-such-name")


def test_register_in_code_takes_precedence_and_can_be_undone(plugin_path):
    from paddiff_example_scheduler import ExampleEulerScheduler

    class MyScheduler(ExampleEulerScheduler):
        pass

    reg = Registry(paths=plugin_path)
    reg.register("schedulers", "example-euler", MyScheduler)
    assert reg.get("schedulers", "example-euler") is MyScheduler
    assert (
        _record(reg, "schedulers", "paddiff-example-scheduler:example-euler").status == "shadowed"
    )
    with pytest.raises(ValueError, match="already registered"):
        reg.register("schedulers", "example-euler", MyScheduler)
    reg.register("schedulers", "example-euler", MyScheduler, replace=True)
    reg.unregister("schedulers", "example-euler")
    assert reg.get("schedulers", "example-euler") is ExampleEulerScheduler
    with pytest.raises(PluginConformanceError):
        reg.register("schedulers", "bad", object)


def test_environment_variable_turns_off_third_party_plugins(plugin_path, monkeypatch):
    monkeypatch.setenv(registry.NO_THIRD_PARTY_ENV, "1")
    reg = Registry(paths=plugin_path)
    assert {r.distribution for r in reg.list()} <= {registry.OWN_DISTRIBUTION}
    with pytest.raises(UnknownPluginError):
        reg.get("schedulers", "example-euler")
    monkeypatch.setenv(registry.NO_THIRD_PARTY_ENV, "0")
    assert "example-euler" in Registry(paths=plugin_path).names("schedulers")


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown component kind 'samplers'.*schedulers"):
        Registry().list("samplers")
