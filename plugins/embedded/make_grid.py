"""The picture in docs/embedded-model.md: prompts in both languages and the images they give.

    python -m paddiff.plugins.embedded.make_grid [--out docs/embedded-model-grid.png]

Rows are (shape, colour, background) requests in phrasings of the training grammar and of the
held-out set, some combinations seen in training and some held out; columns are the Chinese
prompt and the English prompt, two seeds each, all through `paddiff.load_pipeline`
with its defaults. The image labels rows in English (the machine may have no CJK font); the
exact prompts are printed as a Markdown table for the document.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paddiff.plugins.embedded import dataset, phrasing
from PIL import Image, ImageDraw, ImageFont

#: (shape, fg, bg, size), Chinese prompt, English prompt. Rows 1-5 are phrasings of the training
#: grammar, rows 6-7 held-out phrasings, rows 8-9 held-out combinations (row 9 in held-out
#: phrasings too); `labels` works the splits out from the grammar itself.
ROWS = [
    (("circle", "red", "blue", "big"), "蓝色背景上的红色圆形", "a red circle on a blue background"),
    (
        ("star", "yellow", "purple", "big"),
        "画一个黄色的大五角星，紫色背景",
        "purple background with a big yellow star",
    ),
    (
        ("ring", "white", "black", "small"),
        "背景是黑色，白色小圆环",
        "a small white donut, the background is black",
    ),
    (
        ("triangle", "green", "orange", "big"),
        "橙底上有一个绿色的大三角形",
        "a picture of a big green triangle against orange",
    ),
    (
        ("cross", "blue", "white", "small"),
        "蓝色小十字，白色背景",
        "a blue plus sign on white, small",
    ),
    (
        ("square", "red", "green", "big"),
        "红色大方块画在绿色背景上",
        "a big red square on a background of green",
    ),
    (
        ("star", "white", "blue", "small"),
        "蓝色的底上有一个白色小星星",
        "blue background and a small white star",
    ),
    (
        ("circle", "white", "black", "big"),
        "黑色背景上的白色大圆",
        "a big white circle on a black background",
    ),
    (
        ("square", "yellow", "red", "big"),
        "黄色正方形的背景是红色",
        "a yellow square is on a red backdrop",
    ),
]
SEEDS = (1, 2)
CELL = 128  # each 64x64 image is shown at 2x


def labels(row) -> tuple[str, str, str]:
    """(combination split, Chinese prompt's phrasing split, English prompt's) for a row."""
    attrs, zh, en = row
    combination = "held-out" if dataset.is_held_out(*attrs[:3]) else "seen"
    kinds = [
        "seen" if prompt in phrasing.all_captions(*attrs, language) else "held-out"
        for language, prompt in (("zh", zh), ("en", en))
    ]
    return combination, *kinds


def make_grid(pipe, steps: int, guidance: float) -> tuple[Image.Image, str]:
    label_width = 300
    grid = Image.new("RGB", (label_width + 4 * CELL, len(ROWS) * CELL), "white")
    draw = ImageDraw.Draw(grid)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 15)
    except OSError:
        font = ImageFont.load_default()
    table = [
        "| row | combination | Chinese prompt (columns 1-2) | phrasing "
        "| English prompt (columns 3-4) | phrasing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r, row in enumerate(ROWS):
        attrs, zh, en = row
        split, zh_kind, en_kind = labels(row)
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
        shape, fg, bg, size = attrs
        text = f"{r + 1}. {split} combination\n{size} {fg} {shape}\non {bg}\nphrasings: {zh_kind}, {en_kind}"
        draw.multiline_text((10, r * CELL + 36), text, fill="black", font=font, spacing=6)
        table.append(f"| {r + 1} | {split} | {zh} | {zh_kind} | {en} | {en_kind} |")
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
