"""Options and output handling shared by `paddiff generate`, `img2img` and `inpaint`."""

from __future__ import annotations

import os
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
    parser.add_argument(
        "--variant",
        default=None,
        help='weights variant of a model folder, e.g. "fp16" (reads *.fp16.safetensors)',
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer folder (vocab.json + merges.txt) for a single-file checkpoint; default: "
        "Stable Diffusion's CLIP tokenizer, which paddiff ships",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="for a single-file checkpoint: a diffusers model folder whose unet/, vae/, "
        "text_encoder/ and scheduler/ configs (and tokenizer/) to use instead of the inferred "
        "ones (e.g. for SD 2.x 512-base, which predicts epsilon where most SD 2.x files "
        "predict v)",
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
    parser.add_argument(
        "--execution",
        choices=("auto", "static", "dynamic"),
        help="static: exported programs run by Paddle Inference (exported on first use into "
        "$PADDIFF_CACHE_DIR); dynamic: Paddle's dynamic graph; default auto (static where it "
        "works) or $PADDIFF_EXECUTION; see docs/performance.md",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="arithmetic of the exported programs: bf16 is about twice as fast on CPUs with "
        "AVX512-BF16 or AMX, with slightly different pixels; default fp32 or $PADDIFF_PRECISION",
    )
    parser.add_argument(
        "--runtime",
        help="back end that runs the exported programs: auto (default, or $PADDIFF_RUNTIME: "
        "OpenVINO on CPUs where it is installed, else Paddle Inference), paddle-inference, "
        "openvino, or a plugin's name (paddiff plugins list --kind runtimes)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from paddiff.commands.adapter_options import add_adapter_arguments

    add_adapter_arguments(parser)
    from paddiff.commands.control_options import add_control_arguments

    add_control_arguments(parser)
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


def check_output(output: Path, count: int) -> None:
    """Refuse an -o that cannot be written before any time is spent generating (nothing is
    created here: folders are made when the images are saved)."""
    import paddiff

    is_file = output.suffix.lower() == ".png"
    if is_file and count != 1:
        raise paddiff.ValidationError(
            f"-o {output} names one file but -n {count} images were asked for; "
            "give a folder instead"
        )
    if not is_file and output.suffix:
        raise paddiff.ValidationError(f"-o must name a .png file or a folder, got {output}")
    if output.exists() and output.is_dir() == is_file:
        kind = "a folder" if is_file else "a file"
        raise paddiff.ValidationError(f"-o {output} is {kind}, so it cannot be written to")
    existing = next(p for p in (output, *output.parents) if p.exists())
    if not existing.is_dir() and existing != output:
        raise paddiff.ValidationError(f"-o {output}: {existing} is a file, not a folder")
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise paddiff.ValidationError(f"-o {output}: {existing} is not writable")


def check_before_loading(args):
    """Everything that can be refused without the model (docs/pipeline.md): the output path,
    the settings, the image files and the prompts (the configured prompt filters, built without
    the image checker). Returns those prompt filters."""
    import paddiff
    from paddiff.images import load_image
    from paddiff.safety import check_prompt, load_filters
    from paddiff.validation import DEFAULT_MAX_PIXELS, check_settings

    check_output(Path(args.output), args.count)
    check_settings(
        steps=args.steps,
        guidance_scale=args.guidance,
        eta=args.eta,
        num_images=args.count,
        seed=args.seed,
        width=args.width,
        height=args.height,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        strength=getattr(args, "strength", None),
        scheduler=args.scheduler,
    )
    images = [
        load_image(getattr(args, name), label)
        for name, label in (("image", "image"), ("mask", "mask_image"))
        if getattr(args, name, None) is not None
    ]
    if len(images) == 2 and images[0].size != images[1].size:
        (w, h), (mw, mh) = images[0].size, images[1].size
        raise paddiff.ValidationError(
            f"mask_image is {mw}x{mh} but image is {w}x{h}; they must be the same size"
        )
    from paddiff.commands.control_options import check_control_arguments

    check_control_arguments(args)
    prompt_filters = load_filters(args.safety_config, checks=("prompts",))
    check_prompt(args.prompt, args.negative, prompt_filters)
    return prompt_filters


def run_generation(args, generate) -> int:
    """Check what can be checked without the model, load it, call `generate(pipeline, kwargs)`,
    save and report; errors -> exit 1."""
    import paddiff

    output = Path(args.output)
    try:
        prompt_filters = check_before_loading(args)
        from paddiff.safety import load_filters

        model_dir = args.model if args.model and Path(args.model).is_dir() else None
        image_filters = load_filters(args.safety_config, model_dir=model_dir, checks=("images",))
        filters = prompt_filters.with_image_filters(image_filters)
        for line in filters.status().splitlines():  # say plainly what is (not) being checked
            print(f"safety: {line}", file=sys.stderr)
        loader_options = {
            name: value
            for name, value in vars(args).items()
            if name in ("variant", "tokenizer", "config", "execution", "precision", "runtime")
            and value is not None
        }
        pipeline = paddiff.load_pipeline(args.model, safety_filters=filters, **loader_options)
        if args.max_pixels is not None:
            pipeline.max_pixels = args.max_pixels
        pipeline.long_prompts = args.long_prompts
        from paddiff.commands.adapter_options import apply_adapters

        apply_adapters(pipeline, args)
        from paddiff.commands.control_options import apply_control

        result = generate(pipeline, {**generation_kwargs(args), **apply_control(pipeline, args)})
        paths = result.save(output)
    except (ValueError, paddiff.SafetyBlocked, OSError) as exc:
        # ValidationError is a ValueError; the loader and the safety config raise ValueError
        # and FileNotFoundError naming the file; OSError is a file that cannot be read or
        # written (permissions, a full disk), with its path. Anything else is a bug: let it show.
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    verdicts = result.verdicts or [None] * len(paths)
    for path, settings, verdict in zip(paths, result.settings, verdicts, strict=True):
        flagged = ""
        if verdict is not None and not verdict.allowed:
            flagged = f"  replaced: flagged by the image checker ({verdict.category or 'unsafe'})"
        print(f"{path}  seed {settings['seed']}{flagged}")
    return 0
