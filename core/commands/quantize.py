"""`paddiff quantize MODEL OUT_DIR`: an INT8 copy of a model folder (docs/quantization.md).

The UNet is calibrated on its real inputs while the float model generates images for the
calibration prompts (default: a built-in English/Chinese list), quantized by NNCF and written as
an OpenVINO model; the other components are linked unchanged. `--model OUT_DIR`,
`load_pipeline(OUT_DIR)` and the hub module then use the INT8 UNet like any other model.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from paddiff.quantize.int8 import DEFAULT_SCHEME, SCHEMES

    parser.add_argument("model", type=Path, help="float model folder (diffusers layout)")
    parser.add_argument("out_dir", type=Path, help="new folder for the quantized model")
    parser.add_argument(
        "--calibration-prompts",
        type=Path,
        help="file of prompts, one per line (default: the model folder's calibration_prompts.txt "
        "if it has one, else the built-in bilingual list)",
    )
    parser.add_argument(
        "--scheme",
        default=DEFAULT_SCHEME,
        help="; ".join(f"{name}: {what}" for name, what in SCHEMES.items())
        + f" (default {DEFAULT_SCHEME})",
    )
    parser.add_argument("--height", type=int, help="image height it runs at (default: native)")
    parser.add_argument("--width", type=int, help="image width it runs at (default: native)")
    parser.add_argument("--steps", type=int, default=10, help="steps per calibration image")
    parser.add_argument("--images", type=int, help="use only the first N calibration prompts")
    parser.add_argument(
        "--samples", type=int, default=32, help="recorded UNet calls used to calibrate"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    import sys

    from paddiff.quantize.tool import quantize_model

    try:
        report = _quantize(quantize_model, args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    _print_summary(report, args)
    return 0


def _quantize(quantize_model, args) -> dict:
    return quantize_model(
        args.model,
        args.out_dir,
        scheme=args.scheme,
        prompts_file=args.calibration_prompts,
        height=args.height,
        width=args.width,
        steps=args.steps,
        images=args.images,
        samples=args.samples,
    )


def _print_summary(report: dict, args) -> None:
    worst = list(report["layer_sensitivity"].items())[:5]
    print("most sensitive layers (relative output error on one calibration input):")
    for key, error in worst:
        print(f"  {key}: {error:.3f}")
    print("kept in float32: " + (", ".join(report["kept_in_float"]) or "none"))
    print(f"use it with: paddiff generate --model {args.out_dir} ...")
