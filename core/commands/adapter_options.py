"""`--lora`, `--embedding`, `--lora-dir` and `<lora:NAME:WEIGHT>` for the generating commands."""

from __future__ import annotations

import sys


def add_adapter_arguments(parser) -> None:
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="a LoRA / LoCon file (kohya, A1111, LyCORIS, diffusers, PEFT), with an optional "
        "weight (default 1); repeatable. See docs/adapters.md",
    )
    parser.add_argument(
        "--embedding",
        action="append",
        default=[],
        metavar="PATH",
        help="a textual-inversion embedding (A1111 .pt / .safetensors, diffusers "
        "learned_embeds); its token is the file's name; repeatable",
    )
    parser.add_argument(
        "--lora-dir",
        default=None,
        help='where "<lora:NAME:WEIGHT>" in the prompt looks for NAME.safetensors (default '
        "$PADDIFF_LORA_DIR)",
    )


def apply_adapters(pipeline, args) -> None:
    """Load what the options and the prompt's `<lora:...>` tags ask for; the tags are removed
    from `args.prompt` before it is encoded."""
    from paddiff.lora.names import extract_lora_tags, folders, resolve_name, split_scale

    requests = [split_scale(text) for text in getattr(args, "lora", [])]
    args.prompt, tags = extract_lora_tags(args.prompt)
    dirs = folders(getattr(args, "lora_dir", None))
    requests += [(resolve_name(name, dirs), weight) for name, weight in tags]
    for path, scale in requests:
        report = pipeline.load_lora_weights(path, scale=scale)
        print(
            f"lora: {report.path.name} ({report.format}, weight {scale:g}): "
            f"{report.applied} layers"
            + (f", {len(report.skipped)} skipped" if report.skipped else ""),
            file=sys.stderr,
        )
    for path in getattr(args, "embedding", []):
        token = pipeline.load_textual_inversion(path)
        print(f"embedding: {path} as {token!r}", file=sys.stderr)
