"""The picture in docs/embedded-model.md: prompts in both languages and the images they give.

    python -m paddiff.plugins.embedded.make_grid [--out docs/embedded-model-grid.png]

Rows are (shape, colour, background) requests, some seen in training and some held out; columns
are the Chinese prompt and the English prompt, two seeds each, all through `paddiff.load_pipeline`
with its defaults. The image labels rows in English (the machine may have no CJK font); the
exact prompts are printed as a Markdown table for the document.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paddiff.plugins.embedded import dataset
from PIL import Image, ImageDraw, ImageFont

ROWS = [  # (shape, fg, bg, size): seen in training first, then held out (never trained on)
    ("circle", "red", "blue", "big"),
    ("star", "yellow", "purple", "big"),
    ("ring", "white", "black", "small"),
    ("triangle", "green", "orange", "big"),
    ("cross", "blue", "white", "small"),
    ("circle", "white", "black", "big"),
    ("square", "yellow", "red", "big"),
    ("star", "blue", "white", "big"),
    ("cross", "red", "white", "small"),
]
SEEDS = (1, 2)
CELL = 128  # each 64x64 image is shown at 2x


def row_prompts(row) -> tuple[str, str]:
    attrs = dataset.Attributes(*row)
    return dataset.caption(attrs, "zh", 0), dataset.caption(attrs, "en", 0)


def make_grid(pipe, steps: int, guidance: float) -> tuple[Image.Image, str]:
    label_width = 300
    grid = Image.new("RGB", (label_width + 4 * CELL, len(ROWS) * CELL), "white")
    draw = ImageDraw.Draw(grid)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 15)
    except OSError:
        font = ImageFont.load_default()
    table = ["| row | split | Chinese prompt (columns 1-2) | English prompt (columns 3-4) |"]
    table.append("| --- | --- | --- | --- |")
    for r, row in enumerate(ROWS):
        split = "held-out" if dataset.is_held_out(*row[:3]) else "seen"
        zh, en = row_prompts(row)
        cells = []
        for prompt in (zh, en):
            result = pipe.text_to_image(
                [prompt] * len(SEEDS),
                steps=steps,
                guidance_scale=guidance,
                seed=list(SEEDS),
                progress=False,
            )
            cells.extend(result.images)
        for c, image in enumerate(cells):
            big = image.convert("RGB").resize((CELL, CELL), Image.Resampling.NEAREST)
            grid.paste(big, (label_width + c * CELL, r * CELL))
        shape, fg, bg, size = row
        text = f"{r + 1}. {split}\n{size} {fg} {shape}\non {bg}"
        draw.multiline_text((10, r * CELL + 36), text, fill="black", font=font, spacing=6)
        table.append(f"| {r + 1} | {split} | {zh} | {en} |")
    return grid, "\n".join(table)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paddiff.plugins.embedded.make_grid")
    parser.add_argument("--model", default=None, help="model folder (default: the embedded one)")
    parser.add_argument("--out", default="docs/embedded-model-grid.png")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    args = parser.parse_args(argv)
    import paddiff

    grid, table = make_grid(paddiff.load_pipeline(args.model), args.steps, args.guidance)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(table)


if __name__ == "__main__":
    main()
