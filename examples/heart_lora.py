"""Teach the embedded model a shape it has never seen (a heart, 心形) with `paddiff train lora`.

    python examples/heart_lora.py all --work heart-lora          # data, train, evaluate, picture
    python examples/heart_lora.py data|train|evaluate|picture --work heart-lora

1. `data`: 40 procedurally drawn hearts (random colour on a random background, big or small,
   with a random Chinese or English caption from the embedded model's training grammar:
   "蓝色背景上的一个红色心形", "white background with blue heart") in WORK/data/N_heart (kohya's
   repeat prefix), and regularisation images of the shapes the model already knows in
   WORK/prior, after DreamBooth's prior preservation (Ruiz et al. 2023): by default the base
   model's own samples from old-shape captions in both languages, kept where the evaluator reads
   them right (`Run.prior_source`). A LoRA changes the model for every prompt; these are meant
   to keep it drawing circles when asked for circles. docs/training.md reports how far they do.
2. `train`: runs the `paddiff train lora` command printed below (resumable: run it again after an
   interruption and it continues from the newest resume file) and records its CPU time.
3. `evaluate`: the embedded model's evaluator (`paddiff.plugins.embedded.evaluate`, its shape
   classifier fitted with hearts too) on (a) heart prompts in both languages, with the LoRA at
   weight 1 and without it, and (b) 40 of the model's own evaluation items (old shapes, seen
   combinations) with and without the LoRA. Writes report.json.
   `--run NAME` picks one of RUNS, the configurations docs/training.md compares. The default
   was chosen on these figures, so `--confirm` evaluates again on another draw of items and
   image seeds (report-confirm.json), which no choice was made on, and `--large` on a third
   draw three times the size (report-large.json), for figures less noisy than 1.25 points an
   image.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import dataset, quality

HEARTS = 40
PRIOR_SEED = 30000  # image seeds of the prior samples (the evaluation's are 1000+ and 5000+)
PRIOR_CHUNK = 16
DATA_SEED = 20261207


@dataclass(frozen=True)
class Run:
    """One configuration docs/training.md reports: its regularisation images (DreamBooth's prior
    preservation) and its training options."""

    #: "model": the base model's own samples of old shapes from their captions (DreamBooth);
    #: "model-checked": the same, kept only where the evaluator reads all three attributes
    #: right; "render": renderings of the captions' attributes (the first version of this example)
    prior_source: str
    prior: int  # regularisation images ("model-checked": candidates drawn)
    heart_repeats: int  # kohya's N_ folder prefix on the hearts: their share of each epoch
    steps: int
    batch: int
    learning_rate: str
    options: tuple[str, ...] = ("--targets", "all", "--train-text-encoder")
    prior_loss_weight: float = 1.0
    #: pivotal tuning: `--new-token` values (TOKEN=INIT), and their --token-lr
    new_tokens: tuple[str, ...] = ()
    token_lr: str | None = None

    def describe(self) -> dict:
        record = json.loads(json.dumps(asdict(self)))  # as a JSON record reads back
        if not self.new_tokens:  # (so the work folders of earlier runs still match)
            del record["new_tokens"], record["token_lr"]
        return record

    def train_options(self) -> list[str]:
        return [
            "--rank", "8", *self.options, "--prior-loss-weight", f"{self.prior_loss_weight:g}",
            "--steps", str(self.steps), "--batch-size", str(self.batch),
            "--learning-rate", self.learning_rate, "--lr-schedule", "cosine",
            "--warmup-steps", "15", "--save-every", "50", "--seed", "1",
            *[option for token in self.new_tokens for option in ("--new-token", token)],
            *(["--token-lr", self.token_lr] if self.token_lr else []),
        ]  # fmt: skip


UNET_ONLY = ("--targets", "all")
PIVOTS = ("心=圆", "爱=形", "heart=circle")
NEW_WORDS = ("心", "爱", "heart")
RUNS = {
    # renderings as the prior, 200 steps of 4 (the first version of this example)
    "first": Run("render", 40, 1, 200, 4, "2e-3"),
    # the model's own samples as the prior (DreamBooth), then more steps, then more hearts
    "own": Run("model", 120, 1, 200, 4, "2e-3"),
    "own-400x8": Run("model", 120, 1, 400, 8, "2e-3"),
    "own-hearts3": Run("model", 120, 3, 600, 8, "2e-3"),
    "own-hearts3-unet": Run("model", 120, 3, 400, 8, "2e-3", options=UNET_ONLY),
    # renderings again, more of them, with more hearts and steps
    "render-hearts3": Run("render", 160, 3, 600, 8, "2e-3"),
    # the model's own samples that the evaluator reads right (102 of 320 with round 1's model)
    "checked": Run("model-checked", 320, 3, 400, 8, "2e-3"),
    # the same with twice the hearts' share: round 2's model gets 272 of 320 samples right, so
    # 3 x 40 hearts became 31% of each batch (54% with round 1's 102)
    "checked-hearts6": Run("model-checked", 320, 6, 400, 8, "2e-3"),
    # `checked` with pivotal tuning: the words the heart captions use get rows of their own
    # (心 and 爱 are [UNK] to the model's tokenizer, "heart" is five letter pieces), starting
    # from a shape word's rows ("爱心" then starts as "形心", shape-heart)
    "pivotal": Run("model-checked", 320, 3, 400, 8, "2e-3", new_tokens=PIVOTS, token_lr="5e-3"),
    # the hearts' share doubled, as `checked-hearts6`, with rows that start apart from every
    # old shape (the mean row, no INIT), so that the LoRA's hearts and the prior's circles are
    # not asked of the same starting input, and a higher learning rate to move them further;
    # then the same without a LoRA on the text encoder (old prompts then encode as before)
    "pivotal-mean-hearts6": Run(
        "model-checked", 320, 6, 400, 8, "2e-3", new_tokens=NEW_WORDS, token_lr="1e-2"
    ),
    "pivotal-mean-hearts6-unet": Run(
        "model-checked", 320, 6, 400, 8, "2e-3", UNET_ONLY, new_tokens=NEW_WORDS, token_lr="1e-2"
    ),  # and twice the steps
    "pivotal-mean-hearts6-unet-800": Run(
        "model-checked", 320, 6, 800, 8, "2e-3", UNET_ONLY, new_tokens=NEW_WORDS, token_lr="1e-2"
    ),
}
DEFAULT_RUN = "pivotal-mean-hearts6-unet"  # chosen on the usual draw; see docs/training.md
RUN = RUNS[DEFAULT_RUN]
HEART_ITEMS = 16  # (colour, background, size) items per language
# Old shapes: 40 of the model's own evaluation items (seen combinations) per language; the same
# items and seeds with and without the LoRA, so the two figures differ only by the LoRA. (Sized
# for a shared 2-core machine; quality.py's full set is 130 seen + 34 held-out x 2.)
OLD_SEEN, OLD_HELD_OUT_REPEATS = 40, 0


def make_data(work: Path, run: Run) -> None:
    """WORK/data/N_heart: the hearts (N = run.heart_repeats); WORK/prior: the regularisation
    images. Both kohya folders (NAME.png + NAME.txt)."""
    hearts = work / "data" / f"{run.heart_repeats}_heart"
    if (work / "data-runs.jsonl").is_file():
        made = json.loads((work / "data-runs.jsonl").read_text().splitlines()[-1])
        if made.get("run") != run.describe():
            raise SystemExit(f"{work} holds the data of another run; use a new --work")
        print(f"{work}: data already made", flush=True)
        return
    hearts.mkdir(parents=True, exist_ok=True)
    for i in range(HEARTS):
        rng = np.random.default_rng([DATA_SEED, True, i])
        attrs = heart_attributes(rng)
        save(hearts / f"{i:03d}", dataset.render(attrs, rng), dataset.random_caption(attrs, rng))
    started, cpu = time.time(), time.process_time()
    kept = make_prior(work / "prior", run)
    record = {
        "run": run.describe(),
        "kept": kept,
        "wall_s": round(time.time() - started, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }
    with (work / "data-runs.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def make_prior(folder: Path, run: Run) -> int:
    """The regularisation images; returns how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    attributes, captions = prior_captions(run.prior)
    if run.prior_source == "render":
        for i, attrs in enumerate(attributes):
            rng = np.random.default_rng([DATA_SEED, i])
            dataset.sample_attributes(rng)  # the draws dataset.example() makes before drawing
            save(folder / f"{i:03d}", dataset.render(attrs, rng), captions[i])
        return run.prior
    check = None
    if run.prior_source == "model-checked":
        classifier, _ = quality.fit_classifier(new_shapes=dataset.NEW_SHAPES)

        def check(image, attrs):
            return evaluate_image(image, attrs.combination, classifier)["all_ok"]

    generate = generator(load(None))
    kept = 0
    for start in range(0, run.prior, PRIOR_CHUNK):
        part = range(start, min(run.prior, start + PRIOR_CHUNK))
        images = generate([captions[i] for i in part], [PRIOR_SEED + i for i in part])
        for i, image in zip(part, images, strict=True):
            if check is None or check(image, attributes[i]):
                save(folder / f"{i:03d}", image, captions[i])
                kept += 1
    return kept


def evaluate_image(image, combination, classifier) -> dict:
    from paddiff.plugins.embedded import evaluate as scoring

    return scoring.score(image, *combination, classifier)


def prior_captions(count: int) -> tuple[list[dataset.Attributes], list[str]]:
    """Old shapes (seen combinations, both sizes) and their captions, half in each language,
    from the training grammar; drawn from the data seed, so they are not the evaluation's."""
    attributes, captions = [], []
    for i in range(count):
        attrs = dataset.sample_attributes(np.random.default_rng([DATA_SEED, i]))
        rng = np.random.default_rng([DATA_SEED, 2, i])
        attributes.append(attrs)
        captions.append(dataset.random_caption(attrs, rng, dataset.LANGUAGES[i % 2]))
    return attributes, captions


def save(stem: Path, image: np.ndarray, caption: str) -> None:
    from PIL import Image

    Image.fromarray(image).save(stem.with_suffix(".png"))
    stem.with_suffix(".txt").write_text(caption, encoding="utf-8")


def heart_attributes(rng) -> dataset.Attributes:
    fg, bg = rng.choice(len(dataset.COLOURS), size=2, replace=False)
    size = dataset.SIZES[rng.integers(2)]
    return dataset.Attributes("heart", dataset.COLOURS[fg], dataset.COLOURS[bg], size)


def train_command(work: Path) -> list[str]:
    command = [sys.executable, "-m", "paddiff.cli", "train", "lora", "--data", str(work / "data")]
    command += ["--reg-data", str(work / "prior"), "--output", str(work / "heart.safetensors")]
    command += [*RUN.train_options(), "--no-progress", "--loss-log", str(work / "train.jsonl")]
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


# The evaluation draws: (heart items per language, their stream and first image seed, old-shape
# items per language, their item seed offset and image seed offset). "usual" is the set every
# configuration was compared on; "confirm" a second draw no choice was made on; "large" a
# third, three times the size, so that a 3-point change stands out of the noise.
DRAWS = {
    "usual": (HEART_ITEMS, 99, 5000, OLD_SEEN, 0, 0),
    "confirm": (HEART_ITEMS, 98, 25000, OLD_SEEN, 1, 20000),
    "large": (3 * HEART_ITEMS, 97, 45000, 3 * OLD_SEEN, 2, 40000),
}


def heart_items(draw: str = "usual") -> list[dict]:
    count, stream, first_seed = DRAWS[draw][:3]
    items = []
    for i in range(count):
        rng = np.random.default_rng([quality.EVAL_SEED, stream, i])
        attrs = heart_attributes(rng)
        items.append({"combo": attrs.combination, "size": attrs.size, "split": "heart"})
        items[-1]["seed"] = first_seed + i
    return items


def old_items(draw: str = "usual") -> list[dict]:
    """Old-shape items (seen combinations) of one of the DRAWS."""
    count, seed_offset, image_offset = DRAWS[draw][3:]
    seed = quality.EVAL_SEED + seed_offset
    items = quality.evaluation_items(count, OLD_HELD_OUT_REPEATS, seed=seed)
    return [{**item, "seed": item["seed"] + image_offset} for item in items]


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


def evaluate(work: Path, lora: Path, weights=(1.0, 0.0), draw: str = "usual") -> dict:
    classifier, classifier_report = quality.fit_classifier(new_shapes=dataset.NEW_SHAPES)
    report = {
        "classifier": classifier_report,
        "settings": {"run": RUN.describe(), "lora": str(lora), "draw": draw},
    }
    # Without the LoRA (weight 0) the figures depend only on the installed model: one run gives
    # them for every LoRA (--weights 1 skips them). Weight 0 is the model without the file, not
    # the file at weight 0, which would keep the new tokens it bundles.
    for weight in weights:
        pipe = load(lora if weight else None)
        if weight:
            pipe.set_adapters(["heart"], [weight])
        generate = generator(pipe)
        for name, items in (("heart", heart_items(draw)), ("old", old_items(draw))):
            started = time.time()
            # one prompt per item and language, from the training grammar ("seen" phrasings)
            records = quality.run(generate, items, classifier, phrasings=("seen",))["records"]
            report[f"{name}@{weight:g}"] = summary(records, time.time() - started)
            print(name, weight, json.dumps(report[f"{name}@{weight:g}"]), flush=True)
    out = work / ("report.json" if draw == "usual" else f"report-{draw}.json")
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
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
    rows = [generator(load(path))(prompts, [7] * len(prompts)) for path in (None, lora)]
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
    parser.add_argument("--run", choices=list(RUNS), default=DEFAULT_RUN, help="configuration")
    parser.add_argument("--weights", default="1,0", help="LoRA weights to evaluate at")
    parser.add_argument(
        "--confirm",
        action="store_true",
        help="evaluate on a second set of items and seeds (report-confirm.json), never used to "
        "choose a configuration",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="evaluate on a third set, three times the size (report-large.json)",
    )
    args = parser.parse_args(argv)
    global RUN
    RUN = RUNS[args.run]
    lora = args.lora or args.work / "heart.safetensors"
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PADDIFF_EXECUTION", "dynamic")  # the LoRA is merged either way
    if args.stage in ("data", "all"):
        make_data(args.work, RUN)
    if args.stage in ("train", "all"):
        train(args.work)
    if args.stage in ("evaluate", "all"):
        draw = "confirm" if args.confirm else "large" if args.large else "usual"
        evaluate(args.work, lora, [float(w) for w in args.weights.split(",")], draw)
    if args.stage in ("picture", "all"):
        picture(lora, args.picture)


if __name__ == "__main__":
    main()
