"""`paddiff generate PROMPT`: text to image."""

from __future__ import annotations

from paddiff.commands.generation_options import add_common_arguments, run_generation


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    return run_generation(args, lambda pipe, kwargs: pipe.text_to_image(args.prompt, **kwargs))
