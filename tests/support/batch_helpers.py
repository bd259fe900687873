"""Helpers of the batch kill tests (tests/batch): the job file, the exactly-once check."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

PADDIFF = str(Path(sys.executable).parent / "paddiff")
JOBS = [
    {
        "id": "circles",
        "prompt": "a red circle on a blue background",
        "seed": 1,
        "count": 6,
        "steps": 8,
        "labels": {"shape": "circle"},
    },
    {
        "id": "stars",
        "prompt": "a yellow star on a purple background",
        "seed": 1,
        "count": 6,
        "steps": 8,
        "scheduler": "euler-a",
    },
]
TOTAL = 12


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def metadata(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def pngs(out) -> list[str]:
    folder = out / "images"
    return (
        sorted(p.relative_to(out).as_posix() for p in folder.rglob("*.png"))
        if folder.is_dir()
        else []
    )


def wait_for_images(out, count: int, process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(pngs(out)) < count:
        assert process.poll() is None, "the batch ended before it could be killed"
        assert time.monotonic() < deadline, "no images appeared"
        time.sleep(0.05)


def assert_exactly_once(out, reference) -> None:
    lines = metadata(out)
    files = [m["file"] for m in lines]
    assert len(files) == len(set(files)) == TOTAL  # one line per image, none twice
    assert pngs(out) == sorted(files) == sorted(reference)  # no image missing, none extra
    assert not [p for p in (out / "images").rglob("*") if p.is_file() and p.suffix != ".png"]
    for line in lines:
        assert np.array_equal(pixels(out / line["file"]), reference[line["file"]]), line["file"]
