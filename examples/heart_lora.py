"""Teach the embedded model a shape it has never seen (a heart, 心形) with `paddiff train lora`.

    python examples/heart_lora.py all --work heart-lora          # data, train, evaluate, picture
    python examples/heart_lora.py data|train|evaluate|picture --work heart-lora

1. `data`: 40 procedurally drawn hearts (random colour on a random background, big or small,
   with a random Chinese or English caption from the embedded dataset's phrasings: "蓝色背景上
   的一个红色心形", "a red heart on a blue background"), and 40 renderings of the shapes the
   model already knows with their captions, as regularisation images (after DreamBooth's prior
   preservation, Ruiz et al. 2023, which uses the model's own samples instead): a LoRA changes
   the model for every prompt. docs/training.md reports how far they held the old shapes.
   Written as a kohya folder (NAME.png + NAME.txt).
2. `train`: runs the `paddiff train lora` command printed below (resumable: run it again after an
   interruption and it continues from the newest resume file) and records its CPU time.
3. `evaluate`: the embedded model's evaluator (`paddiff.plugins.embedded.evaluate`, its shape
   classifier fitted with hearts too) on (a) heart prompts in both languages, with the LoRA at
   weight 1 and without it, and (b) the model's own evaluation items (old shapes, seen and
   held-out combinations) with and without the LoRA. Writes report.json.
4. `picture`: before / after images for docs/training.md.

Nothing here depends on the embedded model's weights: after a retrain, run it again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import dataset, quality

HEARTS = 40
PRIOR = 40
DATA_SEED = 20261207
COMMON = [
    "--steps", "200", "--batch-size", "4", "--learning-rate", "2e-3",
    "--lr-schedule", "cosine", "--warmup-steps", "15", "--save-every", "40", "--seed", "1",
    "--no-progress", "--loss-log",
]  # fmt: skip
#: The two runs docs/training.md reports: LoCon on every UNet layer plus the text encoder, and
#: kohya's default (the UNet's attention layers only).
CONFIGS = {
    "locon-te": ["--rank", "8", "--targets", "all", "--train-text-encoder", *COMMON],
    "attention": ["--rank", "8", "--targets", "attention", *COMMON],
}
TRAIN = CONFIGS["locon-te"]
HEART_ITEMS = 16  # (colour, background, size) items per language
# Old shapes: 40 of the model's own evaluation items (seen combinations) per language; the same
# items and seeds with and without the LoRA, so the two figures differ only by the LoRA. (Sized
# for a shared 2-core machine; quality.py's full set is 130 seen + 34 held-out x 2.)
OLD_SEEN, OLD_HELD_OUT_REPEATS = 40, 0


def make_data(work: Path) -> Path:
    folder = work / "data"
    for kind, count in (("heart", HEARTS), ("prior", PRIOR)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([DATA_SEED, kind == "heart", i])
            if kind == "heart":
                attrs = heart_attributes(rng)
                image = dataset.render(attrs, rng)
            else:
                attrs, image = dataset.example(DATA_SEED, i)
            from PIL import Image

            Image.fromarray(image).save(folder / kind / f"{i:03d}.png")
            text = dataset.random_caption(attrs, rng)
            (folder / kind / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return folder


def heart_attributes(rng) -> dataset.Attributes:
    fg, bg = rng.choice(len(dataset.COLOURS), size=2, replace=False)
    size = dataset.SIZES[rng.integers(2)]
    return dataset.Attributes("heart", dataset.COLOURS[fg], dataset.COLOURS[bg], size)


def train_command(work: Path) -> list[str]:
    command = [sys.executable, "-m", "paddiff.cli", "train", "lora", "--data", str(work / "data")]
    command += ["--output", str(work / "heart.safetensors"), *TRAIN, str(work / "train.jsonl")]
    states = sorted(work.glob("heart-step*.state"))
    return command + (["--resume", str(states[-1])] if states else [])


def train(work: Path) -> None:
    command = train_command(work)
    print(" ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {
        "command": command,
        "wall_s": round(time.time() - started, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
    }
    runs = work / "train-runs.jsonl"
    with runs.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record))


# -- evaluation ------------------------------------------------------------------------------------


def heart_items(count: int = HEART_ITEMS) -> list[dict]:
    items = []
    for i in range(count):
        rng = np.random.default_rng([quality.EVAL_SEED, 99, i])
        attrs = heart_attributes(rng)
        items.append({"combo": attrs.combination, "size": attrs.size, "split": "heart"})
        items[-1]["seed"] = 5000 + i
    return items


def load(lora: Path | None):
    import paddiff

    pipe = paddiff.load_pipeline()
    pipe.denoiser_batch_size = None  # a chunk of prompts per denoiser call (quality.py)
    if lora is not None:
        pipe.load_lora_weights(lora, adapter_name="heart")
    return pipe


def generator(pipe, steps: int = 20, guidance: float = 7.5):
    def generate(prompts, seeds):
        result = pipe.text_to_image(
            prompts, steps=steps, guidance_scale=guidance, seed=list(seeds), progress=False
        )
        return np.stack([np.asarray(im.convert("RGB")) for im in result.images])

    return generate


def evaluate(work: Path, lora: Path, weights=(1.0, 0.0)) -> dict:
    classifier, classifier_report = quality.fit_classifier(new_shapes=dataset.NEW_SHAPES)
    old = quality.evaluation_items(OLD_SEEN, OLD_HELD_OUT_REPEATS)
    report = {"classifier": classifier_report, "settings": {"train": TRAIN, "lora": str(lora)}}
    pipe = load(lora)
    # Without the LoRA (weight 0) the figures depend only on the installed model: one run gives
    # them for every LoRA (--weights 1 skips them).
    for weight in weights:
        pipe.set_adapters(["heart"], [weight])
        generate = generator(pipe)
        for name, items in (("heart", heart_items()), ("old", old)):
            started = time.time()
            # one prompt per item and language, from the training grammar ("seen" phrasings)
            records = quality.run(generate, items, classifier, phrasings=("seen",))["records"]
            report[f"{name}@{weight:g}"] = summary(records, time.time() - started)
            print(name, weight, json.dumps(report[f"{name}@{weight:g}"]), flush=True)
    (work / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def summary(records: list[dict], seconds: float) -> dict:
    out = {"images": len(records), "seconds": round(seconds, 1)}
    for language in (*dataset.LANGUAGES, "all"):
        rows = [r for r in records if language in ("all", r["language"])]
        out[language] = {
            "colours_ok": round(float(np.mean([r["fg_ok"] and r["bg_ok"] for r in rows])), 4),
            "shape_ok": round(float(np.mean([r["shape_ok"] for r in rows])), 4),
            "all_ok": round(float(np.mean([r["all_ok"] for r in rows])), 4),
        }
    return out


def picture(lora: Path, out: Path) -> None:
    """Rows: without the LoRA, with it; columns: four heart prompts, then three old shapes."""
    from PIL import Image

    prompts = [
        "蓝色背景上的一个红色心形",
        "a yellow heart on a purple background",
        "绿色的爱心，白底",
        "a big white heart on a black background",
        "蓝色背景上的一个红色圆形",
        "a yellow star on a purple background",
        "黑色的三角形，橙底",
    ]
    pipe = load(lora)
    rows = []
    for weight in (0.0, 1.0):
        pipe.set_adapters(["heart"], [weight])
        rows.append(generator(pipe)(prompts, [7] * len(prompts)))
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image = Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    (out.with_suffix(".txt")).write_text("\n".join(prompts) + "\n", encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python examples/heart_lora.py")
    parser.add_argument("stage", choices=["data", "train", "evaluate", "picture", "all"])
    parser.add_argument("--work", type=Path, default=Path("heart-lora"))
    parser.add_argument("--picture", type=Path, default=Path("docs/training-heart.png"))
    parser.add_argument("--lora", type=Path, help="default: WORK/heart.safetensors")
    parser.add_argument("--config", choices=list(CONFIGS), default="locon-te")
    parser.add_argument("--weights", default="1,0", help="LoRA weights to evaluate at")
    args = parser.parse_args(argv)
    global TRAIN
    TRAIN = CONFIGS[args.config]
    lora = args.lora or args.work / "heart.safetensors"
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PADDIFF_EXECUTION", "dynamic")  # the LoRA is merged either way
    if args.stage in ("data", "all"):
        make_data(args.work)
    if args.stage in ("train", "all"):
        train(args.work)
    if args.stage in ("evaluate", "all"):
        evaluate(args.work, lora, [float(w) for w in args.weights.split(",")])
    if args.stage in ("picture", "all"):
        picture(lora, args.picture)


if __name__ == "__main__":
    main()
