"""The PaddleHub module folder `paddiff`, which has the same name as the `paddiff` library.

PaddleHub imports this folder as the package `paddiff` (its parent is first on `sys.path`) and then
`paddiff.module`. If the library was not imported yet, that would shadow it for the whole process.
So this file imports the real library with this folder's parent hidden from `sys.path` and puts it
in `sys.modules["paddiff"]` in place of this folder; `paddiff.module` is then found by the
library's hub_import finder. Either import order ends with `import paddiff` giving the library.
"""

import importlib
import os
import sys


def _import_library():
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    saved_path = list(sys.path)
    this_folder = sys.modules.pop(__name__)
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != parent]
    try:
        return importlib.import_module(__name__)
    except ImportError as exc:
        sys.modules[__name__] = this_folder
        raise ImportError(
            "the PaddleHub module paddiff needs the paddiff library installed in this Python "
            f"({sys.executable}): pip install paddiff (or `pip install -e .` in a checkout); "
            f"import failed with: {exc}"
        ) from exc
    finally:
        sys.path[:] = saved_path


_import_library()
