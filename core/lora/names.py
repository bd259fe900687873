"""WebUI habits: `<lora:NAME:WEIGHT>` in prompts, LoRAs found by name in operator folders, and
`PATH[:SCALE]` on the command line.

A name is a file stem looked up in the configured folders only: names with a path separator or
".." are refused, so a request (hub serving, a shared prompt) can never reach another file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LORA_DIR_ENV = "PADDIFF_LORA_DIR"
EMBEDDING_DIR_ENV = "PADDIFF_EMBEDDING_DIR"
SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin", ".pth", ".pdparams")
_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]+))?(?::[^>]*)?>")


class AdapterNameError(ValueError):
    """A LoRA / embedding name that is not a file of the configured folders."""


def extract_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(the prompt without its `<lora:NAME:WEIGHT>` tags, [(NAME, WEIGHT), ...]); a missing
    weight is 1.0, as in WebUI."""
    tags = []

    def take(found: re.Match) -> str:
        name, weight = found.group(1).strip(), found.group(2)
        try:
            value = 1.0 if weight is None else float(weight)
        except ValueError:
            raise AdapterNameError(f"<lora:{name}:{weight}>: {weight!r} is not a number") from None
        tags.append((name, value))
        return ""

    text = _TAG.sub(take, prompt)
    return re.sub(r"\s{2,}", " ", text).strip(" ,") if tags else prompt, tags


def folders(given=None, env: str = LORA_DIR_ENV) -> list[Path]:
    """The folders to look names up in: `given` (a path or a list), else $env (os.pathsep
    separated)."""
    if given:
        items = [given] if isinstance(given, (str, Path)) else list(given)
    else:
        items = [p for p in os.environ.get(env, "").split(os.pathsep) if p]
    return [Path(p) for p in items]


def resolve_name(name: str, dirs: list[Path], what: str = "LoRA") -> Path:
    """The file `name` (a stem, or a file name with its suffix) in one of `dirs`."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise AdapterNameError(f"{what} name {name!r}: give a name from the folder, not a path")
    if not dirs:
        raise AdapterNameError(f"{what} {name!r}: no {what} folder is configured")
    for folder in dirs:
        candidates = [folder / name] if Path(name).suffix in SUFFIXES else []
        candidates += [folder / f"{name}{suffix}" for suffix in SUFFIXES]
        for path in candidates:
            if path.is_file():
                return path
    available = sorted(
        {p.stem for d in dirs if d.is_dir() for p in d.iterdir() if p.suffix in SUFFIXES}
    )
    raise AdapterNameError(  # no folder paths: the message may go to a remote client
        f"no {what} named {name!r}"
        + (
            f"; available: {', '.join(available[:20])}"
            if available
            else f" (the {what} folder is empty)"
        )
    )


def split_scale(text: str) -> tuple[str, float]:
    """`PATH[:SCALE]` -> (PATH, SCALE); a colon followed by no number belongs to the path."""
    path, sep, scale = text.rpartition(":")
    if sep:
        try:
            return path, float(scale)
        except ValueError:
            pass
    return text, 1.0
