"""Does the embedded control net put the shape where the silhouette is?

    python -m paddiff.plugins.embedded.evaluate_control [--control PATH] [--out result.json]

For every shape, at each held-out centre of `train_control.HELD_OUT_CENTRES` (training never drew
a shape there), a silhouette is drawn at a random size and the embedded model generates from
"a <colour> <shape> on a <colour> background" with the silhouette as control image. The
generated shape's mask is read by the independent evaluator of `evaluate` (pixels nearer the
foreground colour than the background one) and compared with the silhouette (> 50% white):
IoU = |mask & silhouette| / |mask | silhouette|. The same prompts and seeds without the control
net give the baseline (the model's own placement, near the centre).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import MODEL_DIR, dataset
from paddiff.plugins.embedded.evaluate import read_colours
from paddiff.plugins.embedded.train_control import CONTROL_DIR, HELD_OUT_CENTRES, render_at

EVAL_SEED = 7


def items(repeats: int = 1) -> list[dict]:
    rng = np.random.default_rng(EVAL_SEED)
    out = []
    for _ in range(repeats):
        for shape in dataset.SHAPES:
            for cx, cy in HELD_OUT_CENTRES:
                fg, bg = rng.choice(dataset.COLOURS, size=2, replace=False)
                r = float(rng.uniform(10.0, 14.0))
                out.append(dict(shape=shape, fg=str(fg), bg=str(bg), cx=cx, cy=cy, r=r))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def evaluate(pipe, entries, steps: int, guidance: float, control: bool) -> list[float]:
    scores = []
    for i, item in enumerate(entries):
        attrs = dataset.Attributes(item["shape"], item["fg"], item["bg"], "small")
        _, silhouette = render_at(attrs, item["cx"], item["cy"], item["r"])
        prompt = f"a {item['fg']} {item['shape']} on a {item['bg']} background"
        kwargs = dict(steps=steps, guidance_scale=guidance, seed=1000 + i, progress=False)
        if control:
            kwargs["control_image"] = silhouette
        image = np.asarray(pipe.text_to_image(prompt, **kwargs).images[0])
        scores.append(iou(read_colours(image).mask, silhouette[..., 0] > 127))
    return scores


def main(argv=None) -> None:
    import paddiff

    parser = argparse.ArgumentParser(prog="python -m paddiff.plugins.embedded.evaluate_control")
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--control", default=str(CONTROL_DIR))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--limit", type=int, default=None, help="every k-th item only (quick look)")
    args = parser.parse_args(argv)
    pipe = paddiff.load_pipeline(args.model, controlnet=args.control)
    entries = items(args.repeats)
    if args.limit and args.limit < len(entries):  # a fixed random subset
        chosen = np.random.default_rng(EVAL_SEED).permutation(len(entries))[: args.limit]
        entries = [entries[i] for i in sorted(chosen)]
    with_control = evaluate(pipe, entries, args.steps, args.guidance, control=True)
    pipe.unload_controlnet()
    without = evaluate(pipe, entries, args.steps, args.guidance, control=False)
    result = {
        "images": len(entries),
        "mean_iou": round(float(np.mean(with_control)), 4),
        "median_iou": round(float(np.median(with_control)), 4),
        "share_iou_at_least_0.5": round(float(np.mean(np.array(with_control) >= 0.5)), 4),
        "baseline_mean_iou_without_control": round(float(np.mean(without)), 4),
        "per_shape_mean_iou": {
            shape: round(
                float(
                    np.mean(
                        [
                            s
                            for s, e in zip(with_control, entries, strict=True)
                            if e["shape"] == shape
                        ]
                    )
                ),
                4,
            )
            for shape in dataset.SHAPES
        },
        "steps": args.steps,
        "guidance": args.guidance,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
