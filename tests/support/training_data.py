"""Small training folders for `paddiff train lora` tests, drawn in code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SD1 = Path(__file__).parents[1] / "fixtures" / "sd" / "sd1"
COLOURS = {"红色": (220, 30, 30), "蓝色": (30, 60, 220), "绿色": (30, 170, 60)}


def draw(colour, size=(32, 32), seed=0) -> Image.Image:
    """A disc of `colour` on grey, jittered by `seed`."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (128, 128, 128))
    cx, cy = size[0] / 2 + rng.uniform(-3, 3), size[1] / 2 + rng.uniform(-3, 3)
    r = min(size) * 0.3
    ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return image


def kohya_folder(folder: Path, count: int = 8, sizes=((32, 32),)) -> Path:
    """`count` images with Chinese .txt captions beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for i in range(count):
        name = names[i % len(names)]
        draw(COLOURS[name], sizes[i % len(sizes)], seed=i).save(folder / f"{i:03d}.png")
        (folder / f"{i:03d}.txt").write_text(f"一个{name}的圆", encoding="utf-8")
    return folder


def imagefolder(folder: Path, count: int = 4) -> Path:
    """diffusers' imagefolder layout: images and a metadata.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        name = list(COLOURS)[i % len(COLOURS)]
        draw(COLOURS[name], seed=i).save(folder / f"img{i}.png")
        rows.append(
            json.dumps({"file_name": f"img{i}.png", "text": f"{name}圆"}, ensure_ascii=False)
        )
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder
