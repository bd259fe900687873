"""The `paddiff` command line.

Each sub-command lives in its own module under `paddiff.commands` and is imported only when it is
run, so `paddiff --help` and `paddiff plugins list` never import Paddle.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

import paddiff

#: sub-command -> (module with `add_arguments(parser)` and `run(args) -> int`, help line). The help
#: lines live here, not in the modules, so `paddiff --help` can list every command without
#: importing any of them.
COMMANDS = {
    "plugins": (
        "paddiff.commands.plugins",
        "list the installed components (plugins) and their status",
    ),
    "generate": ("paddiff.commands.generate", "generate images from a text prompt"),
    "img2img": (
        "paddiff.commands.img2img",
        "generate images from an image and a text prompt",
    ),
    "inpaint": (
        "paddiff.commands.inpaint",
        "repaint the masked part of an image guided by a text prompt",
    ),
    "cache": ("paddiff.commands.cache", "list or clear the cache of exported programs"),
    "export": (
        "paddiff.commands.export",
        "export a model's networks to Paddle Inference programs (the static fast path)",
    ),
    "hub": (
        "paddiff.commands.hub",
        "the PaddleHub module inside this package: `paddiff hub install`, `paddiff hub path`",
    ),
    "webui": ("paddiff.commands.webui", "serve the web page (as on `hub serving`) on its own"),
    "quantize": (
        "paddiff.commands.quantize",
        "write an INT8 copy of a model folder (UNet calibrated, quantized, run by OpenVINO)",
    ),
    "batch": (
        "paddiff.commands.batch",
        "run a JSON-lines file of generation jobs into a folder, resumable and exactly once",
    ),
    "train": (
        "paddiff.commands.train",
        "fine-tune a model: `paddiff train lora` (see docs/training.md)",
    ),
    "serve": (
        "paddiff.commands.serve",
        "serve POST /predict/paddiff on Ray Serve (--ray): replicas and dynamic batching",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of `command` only (the one sub-command module imported)."""
    parser = argparse.ArgumentParser(
        prog="paddiff",
        description="Text-to-image diffusion on PaddlePaddle.",
    )
    parser.add_argument("--version", action="version", version=f"paddiff {paddiff.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_line) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_line, description=help_line)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def _command_in(argv: list[str]) -> str | None:
    # The top-level parser has only flags (-h, --version), so the first word that is not a flag
    # names the sub-command; anything else is left for argparse to reject.
    return next((word for word in argv if not word.startswith("-")), None)


def _show_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    # A command-line user needs what happened, not the source line that warned.
    print(f"paddiff: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_one_line  # restored on leaving catch_warnings
            # Paddle warns on import, for every run, about a C++ build cache it never uses here.
            warnings.filterwarnings("ignore", message="No ccache found")
            return args.run(args)
    except paddiff.PluginError as exc:
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: images already written are complete (written, renamed)
        print("paddiff: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `paddiff plugins list | head`: the reader left early. Point stdout at /dev/null so
        # Python's final flush does not raise again, and exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
