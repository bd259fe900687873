"""`paddiff hub install`, then `hub run paddiff` with the CLI's flag spellings and the Python API's:
both are accepted, give the same image, and `hub run paddiff --help` lists them."""

from __future__ import annotations

import os
import subprocess
import sys

import paddiff
import pytest

from support.processes import hub_command

TIMEOUT = 180


@pytest.fixture(scope="module")
def hub_env(tmp_path_factory) -> dict:
    """A fresh HUB_HOME in which `paddiff hub install` (the module shipped in the package) ran."""
    home = tmp_path_factory.mktemp("hub-home")
    env = dict(os.environ, HUB_HOME=str(home))
    env.pop("PADDIFF_MODEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "paddiff.cli", "hub", "install"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "modules" / "paddiff" / "module.py").is_file()
    return env


def hub_run(env, cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*hub_command(), "run", "paddiff", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_hub_run_help_lists_the_cli_spellings(hub_env, tmp_path):
    done = hub_run(hub_env, tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for flags in ("--guidance GUIDANCE_SCALE, --guidance_scale", "-n NUM_IMAGES, --count"):
        assert flags in done.stdout
    for flag in ("--negative", "--steps", "--seed", "--scheduler", "--image", "--mask"):
        assert flag in done.stdout


def test_both_spellings_give_the_same_images(hub_env, tmp_path):
    common = ["--prompt", "蓝色背景上的一个红色圆形", "--steps", "3", "--seed", "5"]
    cli = hub_run(
        hub_env, tmp_path, *common, "--guidance", "4", "--count", "2", "--output_dir", "a"
    )
    assert cli.returncode == 0, cli.stderr
    api = hub_run(
        hub_env,
        tmp_path,
        *common,
        "--guidance_scale",
        "4",
        "--num_images",
        "1",
        "--output_dir",
        "b",
    )
    assert api.returncode == 0, api.stderr
    first, second = sorted((tmp_path / "a").glob("*.png"))
    (alone,) = (tmp_path / "b").glob("*.png")
    assert paddiff.read_parameters(second)["CFG scale"] == "4"
    assert first.read_bytes() == alone.read_bytes()
