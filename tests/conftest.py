"""Shared test fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Components loaded by tests run in the dynamic graph unless a test asks for static execution
# (tests/inference/test_export.py): parity tests compare the network itself, and exporting every
# fixture model would cost minutes and write to ~/.cache.
os.environ.setdefault("PADDIFF_EXECUTION", "dynamic")
# Caches the tests fill (exported programs, model hashes) go to a throwaway folder, never to the
# user's ~/.cache; subprocesses inherit it.
os.environ.setdefault("PADDIFF_CACHE_DIR", tempfile.mkdtemp(prefix="paddiff-test-cache-"))
# Static tests run Paddle Inference's programs unless they name a back end
# (tests/inference/test_runtimes.py covers each): "auto" would convert every exported fixture for
# OpenVINO where it is installed, seconds per network.
os.environ.setdefault("PADDIFF_RUNTIME", "paddle-inference")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGIN = ROOT / "examples" / "paddiff-example-scheduler"
FAULTY_PLUGINS = ROOT / "tests" / "plugins" / "paddiff-test-plugins"
#: a scheduler package written against the round-1 protocol, as third parties wrote them
LEGACY_PLUGIN = ROOT / "tests" / "plugins" / "paddiff-legacy-heun"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """A folder holding the example plugin, the faulty test plugins and a round-1 protocol
    scheduler package, installed by pip.

    pip writes real `*.dist-info` metadata there (entry_points.txt included), so the registry
    finds these plugins exactly as it would in site-packages, without touching the test
    environment itself.
    """
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(EXAMPLE_PLUGIN),
            str(FAULTY_PLUGINS),
            str(LEGACY_PLUGIN),
        ],
        check=True,
    )
    return target


@pytest.fixture()
def plugin_path(plugin_site, monkeypatch) -> list[str]:
    """`sys.path` with the plugin site in front, so the installed plugins can be imported."""
    monkeypatch.syspath_prepend(str(plugin_site))
    return [str(plugin_site)] + sys.path
