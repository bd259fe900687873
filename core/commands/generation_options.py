"""Options and output handling shared by `paddiff generate`, `img2img` and `inpaint`."""

from __future__ import annotations

import sys
from pathlib import Path


def add_common_arguments(parser, strength_default: float | None = None) -> None:
    parser.add_argument("prompt", help="what to draw (quote it)")
    parser.add_argument(
        "-o",
        "--output",
        default=".",
        help="a .png file (one image) or a folder for numbered files (default: the current folder)",
    )
    parser.add_argument(
        "--model",
        help="model folder (diffusers or ppdiffusers layout) or single-file checkpoint; "
        "default: the embedded model",
    )
    parser.add_argument("--negative", default=None, help="negative prompt")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    parser.add_argument(
        "--scheduler",
        default=None,
        help='sampler: a WebUI name such as "dpm++2m-karras" or "euler-a", or a scheduler '
        "class name; default: the model's own",
    )
    parser.add_argument(
        "--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the first image (the next get seed+1, ...)"
    )
    parser.add_argument("--width", type=int, default=None, help="default: the model's size")
    parser.add_argument("--height", type=int, default=None, help="default: the model's size")
    parser.add_argument("-n", "--count", type=int, default=1, help="number of images (default 1)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    parser.add_argument("--max-pixels", type=int, default=None, help="largest width x height")
    parser.add_argument(
        "--long-prompts",
        action="store_true",
        help='read WebUI emphasis like "(word:1.3)" and encode long prompts in chunks',
    )
    parser.add_argument(
        "--safety-config",
        help="JSON file configuring the safety filters (see docs/safety.md); default: the "
        "shipped prompt term lists plus the model's own image checker if it has one; "
        '{"enabled": false} turns them off',
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if strength_default is not None:
        parser.add_argument(
            "--strength",
            type=float,
            default=strength_default,
            help=f"how much to change the image, 0 to 1 (default {strength_default})",
        )


def generation_kwargs(args) -> dict:
    return dict(
        negative_prompt=args.negative,
        steps=args.steps,
        guidance_scale=args.guidance,
        width=args.width,
        height=args.height,
        num_images_per_prompt=args.count,
        seed=args.seed,
        eta=args.eta,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )


def run_generation(args, generate) -> int:
    """Load the model, call `generate(pipeline, kwargs)`, save and report; errors -> exit 1."""
    import paddiff

    output = Path(args.output)
    try:
        if output.suffix.lower() == ".png" and args.count != 1:
            raise paddiff.ValidationError(
                f"-o {output} names one file but -n {args.count} images were asked for; "
                "give a folder instead"
            )
        if output.suffix.lower() not in (".png", ""):
            raise paddiff.ValidationError(f"-o must name a .png file or a folder, got {output}")
        from paddiff.safety import load_filters

        model_dir = args.model if args.model and Path(args.model).is_dir() else None
        filters = load_filters(args.safety_config, model_dir=model_dir)
        for line in filters.status().splitlines():  # say plainly what is (not) being checked
            print(f"safety: {line}", file=sys.stderr)
        pipeline = paddiff.load_pipeline(args.model, safety_filters=filters)
        if args.max_pixels is not None:
            pipeline.max_pixels = args.max_pixels
        pipeline.long_prompts = args.long_prompts
        result = generate(pipeline, generation_kwargs(args))
        paths = result.save(output)
    except (ValueError, paddiff.SafetyBlocked, FileNotFoundError) as exc:
        # ValidationError is a ValueError; the loader and the safety config raise ValueError
        # and FileNotFoundError naming the file. Anything else is a bug: let it show.
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    verdicts = result.verdicts or [None] * len(paths)
    for path, settings, verdict in zip(paths, result.settings, verdicts, strict=True):
        flagged = ""
        if verdict is not None and not verdict.allowed:
            flagged = f"  replaced: flagged by the image checker ({verdict.category or 'unsafe'})"
        print(f"{path}  seed {settings['seed']}{flagged}")
    return 0
