"""The name collision between the library `paddiff` and the PaddleHub module folder `paddiff`,
reproduced without PaddleHub: its loader puts the folder's parent first on `sys.path` and imports
`paddiff.module` (paddlehub/utils/utils.py, load_py_module). Fast; test_module.py covers the
same through the real `hub` commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import paddiff
import pytest

HUB_SHIM = Path(__file__).resolve().parents[2] / "hub_module" / "paddiff" / "__init__.py"

LOAD_LIKE_PADDLEHUB = """
    import importlib, json, sys
    modules_dir = sys.argv[2]
    if sys.argv[1] == "library-first":
        import paddiff
    sys.path.insert(0, modules_dir)
    hub_module = importlib.import_module("paddiff.module")
    sys.path.pop(0)
    import paddiff
    import paddiff.serving
    print(json.dumps({
        "library": paddiff.__file__,
        "hub_module": hub_module.__file__,
        "marker": hub_module.MARKER,
        "library_in_module": hub_module.paddiff_seen,
    }))
"""


@pytest.fixture()
def modules_dir(tmp_path) -> Path:
    """A HUB_HOME/modules folder holding the real shim and a stand-in module.py."""
    folder = tmp_path / "modules" / "paddiff"
    folder.mkdir(parents=True)
    shutil.copy(HUB_SHIM, folder / "__init__.py")
    (folder / "module.py").write_text(
        "import paddiff\nMARKER = 'hub module'\npaddiff_seen = paddiff.__file__\n"
    )
    return folder.parent


@pytest.mark.parametrize("order", ["library-first", "hub-first"])
def test_either_import_order_gives_the_library_and_the_hub_module(modules_dir, tmp_path, order):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOAD_LIKE_PADDLEHUB), order, str(modules_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    library = str(Path(paddiff.__file__).resolve())
    assert str(Path(report["library"]).resolve()) == library
    assert str(Path(report["library_in_module"]).resolve()) == library
    assert Path(report["hub_module"]).resolve() == (modules_dir / "paddiff" / "module.py")
    assert report["marker"] == "hub module"


def test_working_directory_holding_the_module_folder_does_not_shadow_the_library(modules_dir):
    done = subprocess.run(
        [sys.executable, "-c", "import paddiff, paddiff.serving; print(paddiff.__file__)"],
        cwd=modules_dir,  # '' on sys.path is this folder, which holds paddiff/__init__.py
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == Path(paddiff.__file__).resolve()
