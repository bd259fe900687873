"""Does synthetic data help? A shape classifier trained only on images from the embedded model,
tested on freshly rendered real shapes.

    python examples/synthetic_shapes.py --out synthetic [--images 480] [--workers 2]

1. Writes a job file: for each image group, a random (shape, colour, background, size) from the
   combinations the embedded model was trained on, and one of its captions (Chinese or
   English), with the attributes as `labels`.
2. Runs `paddiff batch` on it (resumable: run the script again after an interruption).
3. Trains a small CNN (Paddle, 32x32 inputs) on the generated images only, to name the shape
   (6 classes), using the job labels.
4. Tests it on real shapes freshly drawn by the embedded model's own data generator
   (`paddiff.plugins.embedded.dataset`, a seed the model never saw), and, for scale, compares
   with the same CNN trained on as many real renders, on a few real renders, and on those few
   plus the generated images, and with chance (1/6).

The printed table is the measured answer; docs/batch.md records one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import dataset
from PIL import Image

SHAPES = dataset.SHAPES
IMAGES_PER_JOB = 1  # neighbouring seeds of one prompt give near-copies with this model
TEST_SEED = 20261207  # a stream of real renders that neither the model nor the classifier saw


def write_jobs(path: Path, images: int, steps: int, seed: int = 0) -> None:
    """`images` images in jobs of IMAGES_PER_JOB, shapes in equal numbers."""
    rng = np.random.default_rng(seed)
    lines = []
    for j in range(images // IMAGES_PER_JOB):
        shape = SHAPES[j % len(SHAPES)]
        combos = [c for c in dataset.SEEN if c[0] == shape]
        _, fg, bg = combos[rng.integers(len(combos))]
        attrs = dataset.Attributes(shape, fg, bg, dataset.SIZES[rng.integers(2)])
        lines.append(
            {
                "id": f"shape{j:04d}",
                "prompt": dataset.random_caption(attrs, rng),
                "seed": 1000 * j,
                "count": IMAGES_PER_JOB,
                "steps": steps,
                "labels": {"shape": shape, "fg": fg, "bg": bg, "size": attrs.size},
            }
        )
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


def load_generated(out: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        with Image.open(out / record["file"]) as image:
            images.append(np.asarray(image.convert("RGB")))
        labels.append(SHAPES.index(record["labels"]["shape"]))
    return np.stack(images), np.array(labels)


def real_shapes(count: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    attrs, images = dataset.make_images(seed, count, split)
    return images, np.array([SHAPES.index(a.shape) for a in attrs])


def prepare(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 64, 64, 3) -> float32 (n, 3, 32, 32), each image normalised to zero mean and
    unit variance, so the classifier sees form more than colour."""
    x = images.astype(np.float32).reshape(len(images), 32, 2, 32, 2, 3).mean(axis=(2, 4))
    x = x.transpose(0, 3, 1, 2)
    x -= x.mean(axis=(1, 2, 3), keepdims=True)
    x /= x.std(axis=(1, 2, 3), keepdims=True) + 1e-3
    return x


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0):
    import paddle
    from paddle import nn

    paddle.seed(seed)
    model = nn.Sequential(
        nn.Conv2D(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),  # 16x16
        nn.Conv2D(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),  # 8x8
        nn.Conv2D(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2D(1),
        nn.Flatten(), nn.Linear(32, len(SHAPES)),
    )  # fmt: skip
    optimizer = paddle.optimizer.Adam(learning_rate=3e-3, parameters=model.parameters())
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 32):
            batch = order[start : start + 32]
            images = x[batch]
            flip = rng.random(len(batch)) < 0.5  # shapes are mirror-symmetric up to jitter
            images[flip] = images[flip][..., ::-1]
            logits = model(paddle.to_tensor(np.ascontiguousarray(images)))
            loss = nn.functional.cross_entropy(logits, paddle.to_tensor(y[batch]))
            optimizer.clear_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import paddle

    with paddle.no_grad():
        predicted = model(paddle.to_tensor(x)).numpy().argmax(axis=1)
    return float((predicted == y).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the jobs and the generated data")
    parser.add_argument("--images", type=int, default=480, help="generated images (default 480)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps (default 8)")
    parser.add_argument("--workers", type=int, default=1, help="paddiff batch --workers")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--few-real", type=int, default=48, help="real renders in the small real training set"
    )
    parser.add_argument("--test-images", type=int, default=600)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = out / "jobs.jsonl"
    write_jobs(jobs, args.images, args.steps)
    started = time.perf_counter()
    paddiff = Path(sys.executable).parent / "paddiff"
    command = [str(paddiff), "batch", str(jobs), "--out", str(out / "data")]
    subprocess.run([*command, "--workers", str(args.workers)], check=True)
    generation = time.perf_counter() - started

    x_gen, y_gen = load_generated(out / "data")
    test_seen = real_shapes(args.test_images, TEST_SEED, "train")
    test_held = real_shapes(args.test_images // 2, TEST_SEED + 1, "held_out")
    real_train = real_shapes(len(x_gen), TEST_SEED + 2, "train")

    few = real_shapes(args.few_real, TEST_SEED + 3, "train")
    training_sets = {
        "generated only": (x_gen, y_gen),
        "real renders, as many": real_train,
        f"{args.few_real} real renders": few,
        f"{args.few_real} real + generated": (
            np.concatenate([few[0], x_gen]),
            np.concatenate([few[1], y_gen]),
        ),
    }
    rows = []
    for name, (x, y) in training_sets.items():
        started = time.perf_counter()
        model = train(prepare(x), y, args.epochs)
        rows.append(
            (
                name,
                len(x),
                accuracy(model, prepare(test_seen[0]), test_seen[1]),
                accuracy(model, prepare(test_held[0]), test_held[1]),
                time.perf_counter() - started,
            )
        )
    print(
        f"\npaddiff batch: {generation:.0f} s ({len(x_gen)} images, {args.steps} steps; a rerun counts only what was left)"
    )
    print(
        f"test: {len(test_seen[1])} real renders (seen combinations), "
        f"{len(test_held[1])} (held-out combinations); chance {1 / len(SHAPES):.3f}"
    )
    print("| trained on | images | accuracy, seen combinations | accuracy, held-out | train s |")
    print("| --- | --- | --- | --- | --- |")
    for name, count, seen, held, seconds in rows:
        print(f"| {name} | {count} | {seen:.3f} | {held:.3f} | {seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
