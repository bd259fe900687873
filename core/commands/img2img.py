"""`paddiff img2img PROMPT --image FILE`: repaint an image guided by a prompt."""

from __future__ import annotations

from paddiff.commands.generation_options import add_common_arguments, run_generation


def add_arguments(parser) -> None:
    add_common_arguments(parser, strength_default=0.8)
    parser.add_argument("-i", "--image", required=True, help="the starting image file")
    parser.set_defaults(run=run)


def run(args) -> int:
    return run_generation(
        args,
        lambda pipe, kwargs: pipe.image_to_image(
            args.prompt, args.image, strength=args.strength, **kwargs
        ),
    )
