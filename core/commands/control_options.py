"""`--controlnet PATH --control-image IMG [--control-preprocessor NAME] [--control-scale W]
[--control-start F] [--control-end F]` for the generating commands (docs/controlnet.md).

Each option may be repeated: the k-th `--control-image` (and preprocessor, scale, start, end)
belongs to the k-th `--controlnet`. A per-net option given once applies to every net.
"""

from __future__ import annotations

PER_NET = (
    ("control_image", "--control-image"),
    ("control_preprocessor", "--control-preprocessor"),
    ("control_scale", "--control-scale"),
    ("control_start", "--control-start"),
    ("control_end", "--control-end"),
)


def add_control_arguments(parser) -> None:
    group = parser.add_argument_group("control nets (repeat the options for several nets)")
    group.add_argument(
        "--controlnet",
        action="append",
        default=[],
        metavar="PATH",
        help="a control net: a diffusers folder or an original .pth / .safetensors file",
    )
    group.add_argument(
        "--control-image",
        action="append",
        default=[],
        metavar="IMG",
        help="the control image of the matching --controlnet (its size is the output size "
        "unless --width/--height are given)",
    )
    group.add_argument(
        "--control-preprocessor",
        action="append",
        default=[],
        metavar="NAME",
        help="make the control image from IMG first: canny, scribble, threshold, invert or "
        "none (default; any paddiff.preprocessors plugin)",
    )
    group.add_argument(
        "--control-scale",
        action="append",
        default=[],
        type=float,
        metavar="W",
        help="weight of the control net's residuals (default 1.0)",
    )
    group.add_argument(
        "--control-start",
        action="append",
        default=[],
        type=float,
        metavar="F",
        help="fraction of the steps before which the control net is off (default 0)",
    )
    group.add_argument(
        "--control-end",
        action="append",
        default=[],
        type=float,
        metavar="F",
        help="fraction of the steps after which the control net is off (default 1)",
    )
    group.add_argument(
        "--guess-mode",
        action="store_true",
        help="diffusers' guess mode (A1111: 'ControlNet is more important')",
    )


def check_control_arguments(args) -> None:
    """Refuse mismatched option counts, unreadable control images and unknown preprocessors
    before the model is loaded."""
    from paddiff import registry
    from paddiff.images import load_image
    from paddiff.validation import ValidationError

    nets = getattr(args, "controlnet", [])
    n = len(nets)
    for name, flag in PER_NET:
        values = getattr(args, name, [])
        if values and not nets:
            raise ValidationError(f"{flag} given without --controlnet")
        if name == "control_image" and len(values) != n:
            raise ValidationError(f"{len(values)} --control-image for {n} --controlnet")
        if len(values) not in (0, 1, n):
            raise ValidationError(f"{len(values)} {flag} for {n} --controlnet (give 1 or {n})")
    for image in getattr(args, "control_image", []):
        load_image(image, "control image")
    known = registry.default_registry().names("preprocessors")
    for name in getattr(args, "control_preprocessor", []):
        if name not in known:
            raise ValidationError(
                f"no preprocessor named {name!r}; known: {', '.join(sorted(known))}"
            )


def apply_control(pipeline, args) -> dict:
    """Load the control nets; the generation keyword arguments for them ({} without)."""
    if not getattr(args, "controlnet", []):
        return {}
    pipeline.load_controlnet(args.controlnet)
    kwargs = {"control_image": list(args.control_image), "guess_mode": args.guess_mode}
    for name, key in (
        ("control_preprocessor", "control_preprocessor"),
        ("control_scale", "controlnet_conditioning_scale"),
        ("control_start", "control_guidance_start"),
        ("control_end", "control_guidance_end"),
    ):
        values = getattr(args, name)
        if values:
            kwargs[key] = list(values)
    return kwargs
