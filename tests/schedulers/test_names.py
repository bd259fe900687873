"""Names users type map onto the right scheduler and options."""

from __future__ import annotations

import json

import pytest
from paddiff import registry
from paddiff.scheduler_names import ALIASES, create_scheduler, resolve_scheduler_name

from support.helpers import run_cli
from support.scheduler_helpers import SD_CONFIG

BUILT_IN = registry.Registry(third_party=False).names("schedulers")


@pytest.mark.parametrize(
    "typed, target, options",
    [
        ("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        ("dpm++2m-karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        ("dpm++_2m_karras", "DPMSolverMultistepScheduler", {"solver_order": 2}),
        ("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
        ("dpm++3m-sde", "DPMSolverMultistepScheduler", {"solver_order": 3}),
        ("Euler a", "EulerAncestralDiscreteScheduler", {}),
        ("euler-a", "EulerAncestralDiscreteScheduler", {}),
        ("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        ("dpm++sde-karras", "DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
        ("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
        ("LMS Karras", "LMSDiscreteScheduler", {"use_karras_sigmas": True}),
        ("UniPC", "UniPCMultistepScheduler", {}),
        ("lcm", "LCMScheduler", {}),
        ("plms", "PNDMScheduler", {"skip_prk_steps": True}),
        ("eulerdiscretescheduler", "EulerDiscreteScheduler", {}),
        ("DDIMScheduler", "DDIMScheduler", {}),
    ],
)
def test_names_resolve(typed, target, options):
    resolved, implied = resolve_scheduler_name(typed, BUILT_IN)
    assert resolved == target
    assert options.items() <= implied.items()


def test_every_alias_targets_a_built_in_scheduler_and_valid_options():
    for names, target, options in ALIASES:
        assert target in BUILT_IN, names
        scheduler = create_scheduler(names[0], dict(SD_CONFIG))
        for key, value in options.items():
            assert scheduler.config[key] == value, (names[0], key)


def test_alias_options_override_the_model_folder_config():
    base = {**SD_CONFIG, "use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}
    scheduler = create_scheduler("DPM++ 2M", base)
    assert scheduler.config["use_karras_sigmas"] is False
    assert scheduler.config["algorithm_type"] == "dpmsolver++"
    assert scheduler.config["beta_schedule"] == "scaled_linear"  # the model's schedule is kept


def test_unknown_name_lists_known_names():
    with pytest.raises(registry.UnknownPluginError) as error:
        resolve_scheduler_name("eular a", BUILT_IN)
    message = str(error.value)
    assert "Did you mean 'euler-a'?" in message
    assert "dpm++2m-karras" in message and "EulerDiscreteScheduler" in message


def test_third_party_names_resolve(plugin_path):
    plugins = registry.Registry(paths=plugin_path)
    scheduler = create_scheduler("example-euler", dict(SD_CONFIG), registry=plugins)
    assert type(scheduler).__name__ == "ExampleEulerScheduler"
    qualified = "paddiff-example-scheduler:example-euler"
    assert resolve_scheduler_name(qualified, plugins.names("schedulers")) == (qualified, {})


def test_plugins_list_shows_aliases():
    result = run_cli("plugins", "list", "--kind", "schedulers")
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if "DPMSolverMultistepScheduler" in row)
    assert "dpm++2m-karras" in line
    listed = json.loads(run_cli("plugins", "list", "--kind", "schedulers", "--json").stdout)
    euler_a = next(r for r in listed if r["name"] == "EulerAncestralDiscreteScheduler")
    assert euler_a["aliases"] == ["euler-a"]
