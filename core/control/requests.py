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
    available = controlnet_names(dirs)
    listed = f"; available: {', '.join(available[:20])}" if available else " (folder empty)"
    raise error(f"no control net named {name!r}{listed}")


def controlnet_names(dirs: list[Path]) -> list[str]:
    """The names `resolve_controlnet` accepts in `dirs`: diffusers folders NAME/ (with
    config.json) and files NAME.safetensors / .pth / .ckpt / .bin, sorted."""
    names = set()
    for folder in map(Path, dirs):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith("."):
                continue  # resolve_controlnet refuses such names
            if (entry / "config.json").is_file():
                names.add(entry.name)
            elif entry.is_file() and entry.suffix in FILE_SUFFIXES:
                names.add(entry.stem)
    return sorted(names)


def check_unit_fields(item, where: str, fields, error=ValueError, shape: str = "") -> dict:
    """`item` if it is an object whose fields are all among `fields`; else `error` naming the
    unit (`where`) and, for a non-object, the `shape` it must have."""
    if not isinstance(item, dict):
        raise error(f"{where} must be an object with {shape}")
    unknown = sorted(set(item) - set(fields))
    if unknown:
        raise error(
            f"{where}: unknown field(s) {', '.join(unknown)}; fields are {', '.join(fields)}"
        )
    return item


def unit_settings(item: dict, where: str, error=ValueError) -> dict:
    """A unit's "scale" (0..5), "start", "end" (0..1, start < end) and "preprocessor" (a
    registered name, default "none"), checked: what a served request and a batch job share."""
    from paddiff import registry

    unit = {}
    for key, default, lo, hi in (
        ("scale", 1.0, 0.0, 5.0),
        ("start", 0.0, 0.0, 1.0),
        ("end", 1.0, 0.0, 1.0),
    ):
        value = item.get(key)
        value = default if value is None else value  # null means the default, as elsewhere
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not lo <= value <= hi
        ):
            raise error(f"{where}.{key} must be a number in [{lo}, {hi}], got {value!r}")
        unit[key] = float(value)
    if unit["start"] >= unit["end"]:
        raise error(f"{where}: start ({unit['start']:g}) must be below end ({unit['end']:g})")
    preprocessor = item.get("preprocessor") or "none"
    known = registry.default_registry().names("preprocessors")
    if preprocessor not in known:
        raise error(
            f"{where}.preprocessor: no preprocessor named {preprocessor!r}; known: "
            f"{', '.join(sorted(known))}"
        )
    unit["preprocessor"] = preprocessor
    return unit


def parse_controls(items, limits, decode_image, error=ValueError) -> list[dict]:
    """Checked control units: [{"path", "image" (PIL), "scale", "start", "end",
    "preprocessor"}]."""
    if not isinstance(items, list):
        raise error("'controlnets' must be a list of {name, image, scale, start, end}")
    if len(items) > limits.max_controlnets:
        raise error(
            f"{len(items)} control nets asked for; this server allows {limits.max_controlnets}"
        )
    units = []
    for i, item in enumerate(items):
        where = f"'controlnets'[{i}]"
        check_unit_fields(item, where, FIELDS, error, "name and image")
        if item.get("image") is None:
            raise error(f"{where}: 'image' (base64) is required")
        unit = {
            "path": resolve_controlnet(
                item.get("name"), [Path(d) for d in limits.controlnet_dirs], error
            ),
            "image": decode_image(item["image"], f"{where}.image", limits),
            **unit_settings(item, where, error),
        }
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
