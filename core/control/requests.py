"""Control nets in served requests: names from the operator's folder, base64 control images.

A request's "controlnets" field is a list of {"name", "image" (base64), "scale", "start", "end",
"preprocessor"}; only "name" and "image" are required. Names are looked up in the folders of
$PADDIFF_CONTROLNET_DIR (a diffusers folder NAME/ with config.json, or NAME.safetensors /
NAME.pth / NAME.ckpt), never as paths, so a client cannot make the server read other files.
"""

from __future__ import annotations

import math
from pathlib import Path

FILE_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin")
FIELDS = ("name", "image", "scale", "start", "end", "preprocessor")


def resolve_controlnet(name, dirs: list[Path], error=ValueError) -> Path:
    """The control net `name` in one of `dirs` (messages never show the folders' paths)."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise error(f"control net name {name!r}: give a name from the folder, not a path")
    if not dirs:
        raise error(f"control net {name!r}: no control-net folder is configured")
    for folder in dirs:
        if (folder / name / "config.json").is_file():
            return folder / name
        for suffix in FILE_SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    available = sorted(
        {
            p.stem
            for d in dirs
            if d.is_dir()
            for p in d.iterdir()
            if p.suffix in FILE_SUFFIXES or (p / "config.json").is_file()
        }
    )
    listed = f"; available: {', '.join(available[:20])}" if available else " (folder empty)"
    raise error(f"no control net named {name!r}{listed}")


def parse_controls(items, limits, decode_image, error=ValueError) -> list[dict]:
    """Checked control units: [{"path", "image" (PIL), "scale", "start", "end",
    "preprocessor"}]."""
    from paddiff import registry

    if not isinstance(items, list):
        raise error("'controlnets' must be a list of {name, image, scale, start, end}")
    if len(items) > limits.max_controlnets:
        raise error(
            f"{len(items)} control nets asked for; this server allows {limits.max_controlnets}"
        )
    known = None
    units = []
    for i, item in enumerate(items):
        where = f"'controlnets'[{i}]"
        if not isinstance(item, dict):
            raise error(f"{where} must be an object with name and image")
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            raise error(f"{where}: unknown field(s) {', '.join(unknown)}")
        if item.get("image") is None:
            raise error(f"{where}: 'image' (base64) is required")
        unit = {
            "path": resolve_controlnet(
                item.get("name"), [Path(d) for d in limits.controlnet_dirs], error
            ),
            "image": decode_image(item["image"], f"{where}.image", limits),
        }
        for key, default, lo, hi in (
            ("scale", 1.0, 0.0, 5.0),
            ("start", 0.0, 0.0, 1.0),
            ("end", 1.0, 0.0, 1.0),
        ):
            value = item.get(key, default)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not lo <= value <= hi
            ):
                raise error(f"{where}.{key} must be a number in [{lo}, {hi}], got {value!r}")
            unit[key] = float(value)
        preprocessor = item.get("preprocessor") or "none"
        known = known or registry.default_registry().names("preprocessors")
        if preprocessor not in known:
            raise error(
                f"{where}: no preprocessor named {preprocessor!r}; known: {', '.join(sorted(known))}"
            )
        unit["preprocessor"] = preprocessor
        units.append(unit)
    return units


def control_arguments(pipeline, units: list[dict], guess_mode: bool, cache: dict) -> dict:
    """Make the pipeline use exactly these units' nets (each loaded once, kept in `cache` by
    path) and return the generation's control keyword arguments."""
    if not units:
        pipeline.controlnets = []
        return {}
    nets = []
    for unit in units:
        key = str(unit["path"])
        if key not in cache:
            cache[key] = pipeline.load_controlnet(unit["path"])[0]
        nets.append(cache[key])
    pipeline.load_controlnet(nets)
    return {
        "control_image": [u["image"] for u in units],
        "controlnet_conditioning_scale": [u["scale"] for u in units],
        "control_guidance_start": [u["start"] for u in units],
        "control_guidance_end": [u["end"] for u in units],
        "control_preprocessor": [u["preprocessor"] for u in units],
        "guess_mode": bool(guess_mode),
    }
