"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, extra_path: Path | None = None, env: dict | None = None, timeout: float = 120
):
    """Run the real `paddiff` console script in a fresh process."""
    environ = dict(os.environ, **(env or {}))
    if extra_path is not None:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(extra_path), environ.get("PYTHONPATH")])
        )
    script = Path(sys.executable).parent / "paddiff"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=environ, timeout=timeout
    )
