"""Control nets in batch jobs (`paddiff batch`, docs/batch.md).

A job's "controlnets" is a list of units {"name" or "path", "image", "preprocessor", "scale",
"start", "end"}, as a served request's (paddiff.control.requests) but with files instead of
base64: a "name" is looked up in the control-net folders (`--controlnet-dir`, else
$PADDIFF_CONTROLNET_DIR), a "path" and the "image" are relative to the job file, as a job's LoRAs
are. The units are checked when the job file is read, so a bad one is a bad line.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from paddiff.control.requests import check_unit_fields, resolve_controlnet, unit_settings
from paddiff.lora.files import file_sha256

CONTROLNET_DIR_ENV = "PADDIFF_CONTROLNET_DIR"
FIELDS = ("name", "path", "image", "preprocessor", "scale", "start", "end")
# Each net is a copy of the UNet's encoder (about 40% of its weights) and a worker keeps the
# nets it loaded, so a job may combine at most this many (A1111 shows 3 units by default).
MAX_PER_JOB = 4
# Loaded nets a batch worker keeps; tasks are sorted by their nets, so a worker rarely needs
# a net again after it moved on.
CACHED_NETS = 4


@dataclass(frozen=True)
class JobControl:
    """One checked unit of a job: absolute paths and their contents' SHA-256."""

    net: str
    name: str  # the folder's or file's name, as the PNG parameters show it
    net_sha256: str
    image: str
    image_sha256: str
    preprocessor: str
    scale: float
    start: float
    end: float

    def settings(self) -> dict:
        """What decides the pixels, for the image digest (no paths: moving files is no change)."""
        return {
            "name": self.name,
            "sha256": self.net_sha256,
            "image_sha256": self.image_sha256,
            "preprocessor": self.preprocessor,
            "scale": self.scale,
            "start": self.start,
            "end": self.end,
        }

    def task(self) -> dict:
        """The unit as `control_arguments` takes it, in plain JSON (tasks travel to workers
        and Ray actors, which read the files from the same paths, as they read `image`)."""
        return {
            "path": self.net,
            "image": self.image,
            "preprocessor": self.preprocessor,
            "scale": self.scale,
            "start": self.start,
            "end": self.end,
        }


def parse_job_controls(
    fields: dict, base: Path, dirs, error
) -> tuple[tuple[JobControl, ...], bool]:
    """(units, guess_mode) of a job's "controlnets" and "guess_mode"; raises `error` naming the
    unit and field. `dirs`: the folders "name" is looked up in."""
    items = fields.get("controlnets")
    guess = fields.get("guess_mode")
    if guess is not None and not isinstance(guess, bool):
        raise error(f"'guess_mode' must be true or false, got {guess!r}")
    if not items:
        if items is not None and not isinstance(items, list):
            raise error(f"'controlnets' must be a list, got {items!r}")
        if guess is not None:
            raise error("'guess_mode' applies only with 'controlnets'")
        return (), False
    if not isinstance(items, list):
        raise error(f"'controlnets' must be a list, got {items!r}")
    if len(items) > MAX_PER_JOB:
        raise error(f"'controlnets' lists {len(items)} control nets; a job may use {MAX_PER_JOB}")
    units = []
    for i, item in enumerate(items):
        where = f"'controlnets'[{i}]"
        check_unit_fields(item, where, FIELDS, error, '"name" or "path", and "image"')
        net = _net(item, where, base, dirs, error)
        image = item.get("image")
        if not isinstance(image, str) or not image:
            raise error(f"{where}.image: the control image's path is required")
        image_path = (base / image).resolve()
        if not image_path.is_file():
            raise error(f"{where}.image: control image not found: {image}")
        settings = unit_settings(item, where, error)
        units.append(
            JobControl(
                net=str(net),
                name=net.stem if net.is_file() else net.name,
                net_sha256=content_sha256(net),
                image=str(image_path),
                image_sha256=content_sha256(image_path),
                **settings,
            )
        )
    return tuple(units), bool(guess)


def _net(item: dict, where: str, base: Path, dirs, error) -> Path:
    """The control net a unit names: "name" in the folders, or "path" from the job file."""
    if ("name" in item) == ("path" in item):
        raise error(f'{where}: give the control net as "name" or "path" (one of them)')
    if "name" in item:

        def refused(message):  # the folders' own words, and where they were looked for
            return error(
                f"{where}.name: {message} (folders: --controlnet-dir or ${CONTROLNET_DIR_ENV})"
            )

        return resolve_controlnet(item["name"], list(dirs), refused).resolve()
    value = item["path"]
    if not isinstance(value, str) or not value:
        raise error(f"{where}.path must be a non-empty string, got {value!r}")
    path = (base / value).resolve()
    if not (path.is_file() or (path / "config.json").is_file()):
        raise error(
            f"{where}.path: no control net at {value} (a diffusers folder with config.json, or "
            "a .safetensors / .pth file)"
        )
    return path


def content_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents); each file is read once
    per version, since many jobs name the same net."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.relative_to(path).as_posix()}\0".encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


class NetCache(OrderedDict):
    """Loaded control nets by path, the least recently used dropped beyond `size` (a dict for
    `control_arguments`)."""

    def __init__(self, size: int = CACHED_NETS):
        super().__init__()
        self.size = size

    def __getitem__(self, key):
        self.move_to_end(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
