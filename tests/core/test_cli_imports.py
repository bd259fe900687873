"""The CLI imports a sub-command's module only when that command runs (see paddiff.cli)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Runs `main(argv)` in a fresh interpreter and prints which paddiff commands and heavy packages
# ended up imported; a fresh process because this test process has long imported everything.
_PROBE = """
import contextlib, io, json, sys
from paddiff.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(json.loads(sys.argv[1]))
    except SystemExit:
        pass
loaded = [m for m in sys.modules if m.startswith("paddiff.commands.") or m.split(".")[0]
          in ("paddle", "paddlenlp", "paddlehub")]
print(json.dumps(sorted(loaded)))
"""


def _imported_by(argv: list[str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], []])
def test_help_imports_no_command_and_no_paddle(argv):
    assert _imported_by(argv) == set()


def test_plugins_list_imports_only_its_command_and_no_paddle():
    assert _imported_by(["plugins", "list"]) == {"paddiff.commands.plugins"}


def test_a_commands_help_imports_only_that_command():
    imported = _imported_by(["img2img", "--help"])
    assert {m for m in imported if m.startswith("paddiff.commands.")} == {
        "paddiff.commands.img2img",
        "paddiff.commands.generation_options",
        "paddiff.commands.adapter_options",  # --lora, --embedding, --lora-dir (no Paddle)
        "paddiff.commands.control_options",  # --controlnet, --control-image, ... (no Paddle)
    }


def test_help_still_lists_every_command():
    from paddiff.cli import COMMANDS

    result = subprocess.run(
        [sys.executable, "-m", "paddiff.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for name, (_, help_line) in COMMANDS.items():
        assert name in result.stdout and help_line[:30] in result.stdout
