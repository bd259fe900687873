"""The picture grid of docs/controlnet.md: control image -> result, with the embedded model.

    python -m paddiff.plugins.embedded.make_control_grid [--out docs/controlnet-grid.png]

Each row is one prompt; the first column is the control image (a silhouette at a held-out
centre, drawn by `train_control.render_at`), then the image generated with the embedded control
net, then the same prompt and seed without it.
"""

from __future__ import annotations

import argparse

import numpy as np
from paddiff.plugins.embedded import MODEL_DIR, dataset
from paddiff.plugins.embedded.train_control import CONTROL_DIR, render_at
from PIL import Image, ImageDraw

ROWS = [  # (shape, fg, bg, cx, cy, r)
    ("star", "red", "blue", 18, 18, 13),
    ("circle", "yellow", "purple", 46, 46, 12),
    ("square", "green", "white", 46, 18, 11),
    ("triangle", "orange", "black", 18, 46, 13),
    ("cross", "white", "green", 32, 17, 12),
]
SCALE = 3  # each 64x64 picture is shown at 192x192


def main(argv=None) -> None:
    import paddiff

    parser = argparse.ArgumentParser(prog="python -m paddiff.plugins.embedded.make_control_grid")
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--control", default=str(CONTROL_DIR))
    parser.add_argument("--out", default="docs/controlnet-grid.png")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    pipe = paddiff.load_pipeline(args.model)
    plain = pipe.with_components()  # shares the model; gets no control net
    pipe.load_controlnet(args.control)
    plain.controlnets = []
    side = dataset.IMAGE_SIZE * SCALE
    grid = Image.new("RGB", (3 * side, len(ROWS) * side + 20), "white")
    draw = ImageDraw.Draw(grid)
    for col, title in enumerate(("control image", "with control net", "without")):
        draw.text((col * side + 4, 4), title, fill="black")
    for row, (shape, fg, bg, cx, cy, r) in enumerate(ROWS):
        attrs = dataset.Attributes(shape, fg, bg, "small")
        _, silhouette = render_at(attrs, cx, cy, r)
        prompt = f"a {fg} {shape} on a {bg} background"
        common = dict(steps=args.steps, seed=row, progress=False)
        with_control = pipe.text_to_image(prompt, control_image=silhouette, **common).images[0]
        without = plain.text_to_image(prompt, **common).images[0]
        for col, picture in enumerate((Image.fromarray(silhouette), with_control, without)):
            tile = picture.resize((side, side), Image.Resampling.NEAREST)
            grid.paste(tile, (col * side, 20 + row * side))
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
