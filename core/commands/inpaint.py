"""`paddiff inpaint PROMPT --image FILE --mask FILE`: repaint the white part of a mask."""

from __future__ import annotations

from paddiff.commands.generation_options import add_common_arguments, run_generation


def add_arguments(parser) -> None:
    add_common_arguments(parser, strength_default=1.0)
    parser.add_argument("-i", "--image", required=True, help="the image file")
    parser.add_argument(
        "-m", "--mask", required=True, help="mask file, same size: white is repainted"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    return run_generation(
        args,
        lambda pipe, kwargs: pipe.inpaint(
            args.prompt, args.image, args.mask, strength=args.strength, **kwargs
        ),
    )
