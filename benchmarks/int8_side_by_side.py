"""Float and INT8 images of the same prompts and seeds, side by side, with their PSNR.

    python benchmarks/int8_side_by_side.py FLOAT_MODEL INT8_MODEL OUT.png [--steps 20]
        [--size N]

Top row: the float model; bottom row: the `paddiff quantize` folder made from it. Prints the
PSNR of each pair (dB, over 8-bit RGB) and writes the grid to OUT.png.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

PROMPTS = (
    ("a red circle on a blue background", 1),
    ("紫色背景上的一颗黄色星星", 2),
    ("a green triangle on a white background", 3),
    ("黑色背景上的一个橙色十字", 4),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_model")
    parser.add_argument("int8_model")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="image size (default: the model's native)")
    args = parser.parse_args()

    import paddiff

    rows = []
    for model in (args.float_model, args.int8_model):
        pipe = paddiff.load_pipeline(model)
        size = args.size or pipe.native_size()[0]
        rows.append(
            [
                np.asarray(
                    pipe.text_to_image(
                        prompt, steps=args.steps, seed=seed, height=size, width=size,
                        progress=False,
                    ).images[0].convert("RGB")
                )
                for prompt, seed in PROMPTS
            ]
        )  # fmt: skip
    for (prompt, _), a, b in zip(PROMPTS, rows[0], rows[1], strict=True):
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
        print(f"{psnr:6.2f} dB  {prompt}")
    grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    scale = max(1, 256 // rows[0][0].shape[0])
    Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    ).save(args.out)


if __name__ == "__main__":
    main()
