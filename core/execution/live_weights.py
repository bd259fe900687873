"""A program's weights with some replaced (a LoRA fused in), kept on disk, not in memory.

When a static network's weights change in place (a LoRA merged or removed), the program is not
exported again: it is loaded with a parameter file that holds the new values of the changed
weights and, byte for byte, the program's own values of the others (`param_file.write`). That
file stays in a folder next to the cache while it differs from the program's (the Layer then
keeps no weights at all, and reads them from there if it ever needs them), and the originals a
LoRA is removed with are read back from the program's own parameter file, one layer at a time.
So a LoRA costs the process no copy of the model: the predictor's copy is the only one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
from paddiff.execution import param_file
from paddiff.execution.export import names_file, program_files

FOLDER_PREFIX = "paddiff-live-"


class LiveParameters:
    """The changed parameter file of the program at `base` (a prefix), made in `root`."""

    def __init__(self, base: str | Path, root: str | Path):
        self.base = Path(base)
        self.root = Path(root)
        self.names = json.loads(names_file(self.base).read_text(encoding="utf-8"))  # var -> key
        self.variables = {key: var for var, key in self.names.items()}
        self.base_file = program_files(self.base)[1]
        self.entries = param_file.index(self.base_file, list(self.names))
        self.prefix: Path | None = None  # the changed file's prefix; None: same as the base
        self.changed: set[str] = set()  # state-dict keys whose value differs from the base
        self._cleanup = None

    def holds(self, key: str) -> bool:
        return key in self.variables

    def original(self, key: str) -> np.ndarray:
        """`key`'s value in the program's own parameter file."""
        return param_file.read(self.base_file, self.entries[self.variables[key]])

    def reader(self, key: str):
        return lambda: self.original(key)

    def current(self) -> Path:
        """The prefix to load: the changed file's, or the program's if nothing differs."""
        return self.prefix or self.base

    def update(self, values: dict[str, np.ndarray]) -> Path:
        """Replace the weights in `values` (state-dict key -> array); the prefix to load."""
        replaced = {}
        for key, value in values.items():
            if np.array_equal(value, self.original(key)):
                self.changed.discard(key)  # back to the original (a LoRA removed)
            else:
                self.changed.add(key)
                replaced[self.variables[key]] = value
        if not self.changed:
            self.close()
            return self.base
        _remove_stale(self.root)
        folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=self.root))
        try:
            program = program_files(self.base)[0]
            os.symlink(program.resolve(), folder / f"program{program.suffix}")
            os.symlink(names_file(self.base).resolve(), names_file(folder / "program"))
            previous = program_files(self.prefix)[1] if self.prefix else None
            sources = {}
            for var, entry in self.entries.items():
                earlier = previous is not None and self.names[var] in self.changed
                sources[var] = (previous if earlier else self.base_file, entry)
            param_file.write(folder / "program.pdiparams", self.entries, replaced, sources)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.close()  # the previous changed file (everything needed was copied from it)
        self.prefix = folder / "program"
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True)
        return self.prefix

    def close(self) -> None:
        """Delete the changed file (the program's own holds the weights again)."""
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None
        self.prefix = None


def _remove_stale(root: Path) -> None:
    """Changed files left by processes that ended without cleaning up (killed)."""
    for folder in root.glob(f"{FOLDER_PREFIX}*"):
        match = re.match(rf"{FOLDER_PREFIX}(\d+)-", folder.name)
        if match and not _running(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
