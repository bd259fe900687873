"""The `paddiff` command line.

Each sub-command lives in its own module under `paddiff.commands` and is imported only when it is
run, so `paddiff --help` and `paddiff plugins list` never import Paddle.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import paddiff

#: sub-command -> module with `add_arguments(parser)`, `run(args) -> int` and a `HELP` line.
COMMANDS = {
    "plugins": "paddiff.commands.plugins",
    "generate": "paddiff.commands.generate",
    "img2img": "paddiff.commands.img2img",
    "inpaint": "paddiff.commands.inpaint",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddiff",
        description="Text-to-image diffusion on PaddlePaddle.",
    )
    parser.add_argument("--version", action="version", version=f"paddiff {paddiff.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(commands.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except paddiff.PluginError as exc:
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `paddiff plugins list | head`: the reader left early. Point stdout at /dev/null so
        # Python's final flush does not raise again, and exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
