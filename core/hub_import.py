"""Let PaddleHub find its module `paddiff` after this library was imported as `paddiff`.

PaddleHub loads an installed module folder NAME by putting the folder's parent first on `sys.path`
and importing `NAME.module` (paddlehub/utils/utils.py, `load_py_module`). paddiff's module folder
(hub_module/paddiff) has the library's name, so when the library is already in `sys.modules`,
Python looks for `paddiff.module` inside the library and fails. This finder answers exactly that
name with the first `paddiff/module.py` on `sys.path`, which is the folder PaddleHub just put there.

The other import order (module folder first) is handled by hub_module/paddiff/__init__.py, which
loads this library in its place.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.abc import MetaPathFinder

HUB_MODULE = "paddiff.module"


class HubModuleFinder(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != HUB_MODULE:
            return None
        for entry in sys.path:
            candidate = os.path.join(entry or os.curdir, "paddiff", "module.py")
            if os.path.isfile(candidate):
                return importlib.util.spec_from_file_location(fullname, os.path.abspath(candidate))
        return None


def install() -> None:
    """Append the finder once; it is asked only after the normal finders found nothing."""
    if not any(isinstance(finder, HubModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(HubModuleFinder())
