"""Training images and their captions, read from a folder in one of two layouts:

- kohya: `NAME.png` with its caption in `NAME.txt` beside it (sub-folders are read too; a
  `N_name` folder prefix is kohya's repeat count and is honoured);
- diffusers' imagefolder: a `metadata.jsonl` whose lines name `file_name` and a caption
  (`text`, or another column given with `caption_column`).

Captions are read as UTF-8 (Chinese captions work as any other). An image with no caption is
an error unless a default caption is given (`--caption`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SHOWN = 5  # file names listed in an error message


class DatasetError(ValueError):
    """The training folder cannot be used (empty, unreadable, captions missing)."""


@dataclass(frozen=True)
class Example:
    path: Path
    caption: str


def read_examples(
    folder, default_caption: str | None = None, caption_column: str = "text"
) -> list[Example]:
    """Every (image, caption) of `folder`, sorted by path (the order does not depend on the
    file system), with kohya's repeat counts expanded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"training data folder not found: {folder}")
    metadata = folder / "metadata.jsonl"
    if metadata.is_file():
        examples = _from_metadata(metadata, default_caption, caption_column)
    else:
        examples = _from_caption_files(folder, default_caption)
    if not examples:
        raise DatasetError(
            f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); put images with .txt "
            "captions beside them, or a metadata.jsonl, in it"
        )
    return examples


def _from_caption_files(folder: Path, default_caption: str | None) -> list[Example]:
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    missing = [p for p in images if not p.with_suffix(".txt").is_file()]
    if missing and default_caption is None:
        raise DatasetError(
            f"{len(missing)} of {len(images)} images in {folder} have no caption file beside "
            f"them (for example {', '.join(p.name for p in missing[:SHOWN])}); add NAME.txt, "
            "or give a caption for all of them with --caption"
        )
    examples = []
    for image in images:
        text_file = image.with_suffix(".txt")
        caption = _read_text(text_file) if text_file.is_file() else default_caption
        examples += [Example(image, caption)] * _repeats(image.parent, folder)
    return examples


def _repeats(parent: Path, root: Path) -> int:
    """kohya's `10_name` folders: each image of it counts 10 times per epoch."""
    match = re.match(r"^(\d+)_", parent.name) if parent != root else None
    return max(1, int(match.group(1))) if match else 1


def _from_metadata(path: Path, default_caption: str | None, column: str) -> list[Example]:
    examples = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}, line {number}: not JSON ({exc})") from None
        if not isinstance(row, dict) or "file_name" not in row:
            raise DatasetError(f'{path}, line {number}: no "file_name" field')
        image = path.parent / row["file_name"]
        if not image.is_file():
            raise DatasetError(f"{path}, line {number}: {image} does not exist")
        caption = row.get(column, default_caption)
        if caption is None:
            raise DatasetError(
                f"{path}, line {number}: no {column!r} caption (give --caption-column, or a "
                "caption for all images with --caption)"
            )
        examples.append(Example(image, str(caption)))
    return examples


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig").strip()  # utf-8-sig: Notepad's BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path} as UTF-8 text: {exc}") from None


# -- pixels -------------------------------------------------------------------------------------


def bucket_sizes(resolution: int, step: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(width, height) pairs, multiples of `step`, with about resolution^2 pixels and aspect
    ratios up to `max_ratio` (kohya's aspect-ratio buckets)."""
    sizes = set()
    width = step
    while width <= resolution * max_ratio:
        height = int(resolution * resolution / width) // step * step
        if height >= step and max(width / height, height / width) <= max_ratio:
            sizes.add((width, height))
        width += step
    sizes.add((resolution // step * step,) * 2)
    return sorted(sizes)


def nearest_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the image's (in log ratio)."""
    ratio = np.log(size[0] / size[1])
    return min(buckets, key=lambda b: (abs(np.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def load_pixels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The image scaled to cover `size` (width, height) and centre-cropped to it, as float32
    CHW in [-1, 1] (what the VAE encodes)."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None
    width, height = size
    scale = max(width / image.width, height / image.height)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if scaled != image.size:
        image = image.resize(scaled, Image.Resampling.BICUBIC)
    left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
    image = image.crop((left, top, left + width, top + height))
    return (np.asarray(image, np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
