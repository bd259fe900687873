"""The `paddiff` console script, run as a user runs it: a new process."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys

import paddiff

from support.helpers import ROOT, run_cli


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"paddiff {paddiff.__version__}"


def test_plugins_list_shows_third_party_and_broken_plugins(plugin_site):
    result = run_cli("plugins", "list", "--kind", "schedulers", extra_path=plugin_site)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "DISTRIBUTION", "STATUS", "ALIASES", "ERROR"]
    example = next(line for line in lines if "paddiff-example-scheduler" in line)
    assert example.split()[:5] == [
        "schedulers",
        "example-euler",
        "paddiff-example-scheduler",
        "0.1.0",
        "available",
    ]
    clash = next(
        line for line in lines if "paddiff-test-plugins" in line and "example-euler" in line
    )
    assert "shadowed by paddiff-example-scheduler" in clash
    # Without --check nothing is imported, so the broken plugin is not known to be broken yet.
    assert "raises-on-import" in result.stdout and "RuntimeError" not in result.stdout


def test_plugins_list_check_reports_broken_plugins(plugin_site):
    result = run_cli("plugins", "list", "--check", "--json", extra_path=plugin_site)
    assert result.returncode == 0, result.stderr
    records = {(r["distribution"], r["name"]): r for r in json.loads(result.stdout)}
    assert records[("paddiff-example-scheduler", "example-euler")]["status"] == "loaded"
    broken = records[("paddiff-test-plugins", "raises-on-import")]
    assert broken["status"] == "broken" and "RuntimeError" in broken["error"]
    assert "missing step, add_noise" in records[("paddiff-test-plugins", "incomplete")]["error"]


def test_plugins_list_bad_kind_is_a_clear_error():
    result = run_cli("plugins", "list", "--kind", "samplers")
    assert result.returncode == 1
    assert "unknown component kind 'samplers'" in result.stderr


def test_builtins_are_listed_from_setup_cfg_entry_points():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = set()
    for group, value in config["options.entry_points"].items():
        # component kinds only (paddiff.models names model folders, not components)
        if group.removeprefix("paddiff.") in paddiff.interfaces.KINDS:
            for line in filter(None, (raw.strip() for raw in value.splitlines())):
                declared.add((group.removeprefix("paddiff."), line.split("=")[0].strip()))
    result = run_cli("plugins", "list", "--json")
    listed = {
        (r["kind"], r["name"]) for r in json.loads(result.stdout) if r["distribution"] == "paddiff"
    }
    assert listed == declared


def test_listing_does_not_import_paddle():
    code = (
        "import sys; from paddiff.cli import main; main(['plugins', 'list']);"
        "assert not {'paddle', 'paddlenlp', 'paddlehub'} & set(sys.modules), 'heavy import'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_package_folder_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = set()
    for top, package in (("core", "paddiff"), ("plugins", "paddiff.plugins")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            on_disk.add(".".join((package, *parts)))
    # paddiff.hub_module (hub_module/) carries the PaddleHub module folder as data: no __init__.py
    assert on_disk == listed - {"paddiff.hub_module"}
