"""`paddiff train lora --data DIR --output FILE.safetensors`: fine-tune a LoRA in Paddle's
dynamic graph (single process, or data-parallel under `python -m paddle.distributed.launch`).
See docs/training.md."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    lora = kinds.add_parser("lora", help="train a LoRA (kohya or diffusers file)")
    add = lora.add_argument
    add("--model", help="model folder or checkpoint (default: the embedded model)")
    add("--data", required=True, help="images with NAME.txt captions, or a metadata.jsonl")
    add("--reg-data", help="regularisation images (prior preservation), laid out as --data")
    add("--prior-loss-weight", type=float, default=1.0,
        help="loss weight of the --reg-data images (kohya's prior_loss_weight)")  # fmt: skip
    add("--output", required=True, type=Path, help="the LoRA file to write (.safetensors)")
    add("--format", dest="output_format", choices=["kohya", "diffusers"], default="kohya")
    add("--rank", type=int, default=4, help="LoRA rank (kohya: network_dim)")
    add("--alpha", type=float, help="LoRA alpha (default: the rank, a scale of 1)")
    add("--learning-rate", "--lr", type=float, default=1e-4)
    add("--text-encoder-lr", type=float, help="default: --learning-rate")
    add("--lr-schedule", choices=["constant", "cosine"], default="constant")
    add("--warmup-steps", type=int, default=0)
    add("--steps", type=int, help="optimizer steps (default: from --epochs)")
    add("--epochs", type=int, help="passes over the data when --steps is not given (10)")
    add("--batch-size", type=int, default=1, help="per process")
    add("--gradient-accumulation", type=int, default=1)
    add("--resolution", type=int, help="training size (default: the model's)")
    add("--buckets", action="store_true", help="aspect-ratio buckets instead of a centre crop")
    add("--train-text-encoder", action="store_true", help="LoRA on the text encoder too")
    add("--new-token", dest="new_tokens", action="append", default=[], metavar="TOKEN[=INIT]",
        help="pivotal tuning: TOKEN (written in the captions) becomes a new token whose "
        "embedding row trains with the LoRA, starting from INIT's words (default: the mean "
        "row); repeatable. Saved in the LoRA file (A1111's bundled embeddings)")  # fmt: skip
    add("--token-lr", type=float, help="learning rate of the --new-token rows "
        "(default: --learning-rate)")  # fmt: skip
    add("--targets", choices=["attention", "all"], default="attention",
        help="attention: kohya's default layers; all: every Linear and Conv2D (LoCon)")  # fmt: skip
    add("--seed", type=int, default=0)
    add("--caption", help="caption for images without one")
    add("--caption-column", default="text", help="metadata.jsonl column with the captions")
    add("--save-every", type=int, help="write the LoRA and a resume file every N steps")
    add("--resume", dest="resume_from", help="a .state file written by --save-every")
    add("--sample-prompt", dest="sample_prompts", action="append", default=[],
        help="a prompt to render while training (repeatable)")  # fmt: skip
    add("--sample-every", type=int, help="render the sample prompts every N steps")
    add("--gradient-checkpointing", action="store_true", help="recompute UNet blocks")
    add("--bf16", action="store_true", help="bf16 autocast (GPU; Paddle does not autocast on CPU)")
    add("--threads", type=int, help="CPU threads for Paddle (default: all cores)")
    add(
        "--loss-log",
        dest="log",
        help="append one JSON line per step (loss, learning rate, steps/s) here",
    )
    add("--no-progress", dest="progress", action="store_false")
    lora.set_defaults(run=run)


def run(args) -> int:
    from paddiff.training.data import DatasetError
    from paddiff.training.resume import ResumeError

    try:
        return _train(args)
    except (DatasetError, ResumeError, ModelNotTrainableError, ValueError) as exc:
        import sys

        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1


class ModelNotTrainableError(ValueError):
    pass


def check_trainable(model) -> None:
    """An export folder (`paddiff export`) holds programs, not weights a LoRA can train on."""
    if model is None:
        return
    folder = Path(model)
    if folder.is_dir() and not (folder / "model_index.json").is_file():
        manifest = folder / "manifest.json"
        source = ""
        if manifest.is_file():
            try:
                source = json.loads(manifest.read_text()).get("model", "")
            except (ValueError, OSError):
                source = ""
            raise ModelNotTrainableError(
                f"{folder} holds exported programs only (paddiff export), which cannot be "
                "trained; pass the model folder or checkpoint they were exported from"
                + (f" ({source})" if source else "")
            )


def _train(args) -> int:
    import os

    from paddiff.loader import embedded_model_path, load_components
    from paddiff.training.trainer import LoraTraining, Trainer

    if args.output.suffix != ".safetensors":
        raise ValueError(f"--output {args.output}: LoRA files are written as .safetensors")
    check_trainable(args.model)
    import paddle

    paddle.set_device("cpu") if not paddle.is_compiled_with_cuda() else None
    paddle.base.core.set_num_threads(args.threads or os.cpu_count() or 1)
    model = args.model or embedded_model_path()
    if model is None:
        raise ValueError("no --model given and the embedded model is not installed")
    fields = {k: v for k, v in vars(args).items() if k in LoraTraining.__dataclass_fields__}
    settings = LoraTraining(**{**fields, "model": str(model), "output": str(args.output)})
    components = load_components(model, execution="dynamic")
    trainer = Trainer(settings, components)
    trainer.run()
    if trainer.distributed.rank == 0:
        print(f"wrote {args.output} ({trainer.step} steps, {settings.output_format} format)")
    return 0
