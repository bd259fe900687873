"""`paddiff hub path|install`: the PaddleHub module that ships inside the paddiff package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument(
        "action",
        choices=("path", "install"),
        help="path: print the module folder; install: `hub install` it into $HUB_HOME "
        "(default ~/.paddlehub), after which `hub run paddiff` and `hub serving start -m "
        "paddiff` work",
    )
    parser.set_defaults(run=run)


def module_folder() -> Path:
    """The module folder: inside the installed package (a wheel), else the checkout's
    hub_module/paddiff (an editable install, where the package is core/)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (
        package / "hub_module" / "paddiff",
        package.parent / "hub_module" / "paddiff",
    ):
        if (candidate / "module.py").is_file():
            return candidate
    raise FileNotFoundError(f"the PaddleHub module folder is missing from {package}")


def run(args) -> int:
    try:
        folder = module_folder()
    except FileNotFoundError as exc:
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    if args.action == "path":
        print(folder)
        return 0
    # PaddleHub's own `hub install FOLDER`, run by this Python (the `hub` script may be missing
    # from PATH, e.g. in a virtual environment that is not activated).
    entry = "import sys; from paddlehub.commands.utils import execute; sys.exit(execute())"
    return subprocess.call([sys.executable, "-c", entry, "install", str(folder)])
