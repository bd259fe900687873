"""Export a dynamic-graph Layer to a Paddle Inference program."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import paddle


@dataclass(frozen=True)
class InputSpec:
    """One input of an exported program; `None` in `shape` marks a dimension left dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def to_paddle(self) -> paddle.static.InputSpec:
        return paddle.static.InputSpec(list(self.shape), self.dtype, self.name)


def program_files(prefix: str | Path) -> tuple[Path, Path]:
    """(program, parameters) files that `paddle.jit.save(prefix)` writes.

    Paddle 3 writes the program as `prefix.json` (PIR); older releases wrote `prefix.pdmodel`.
    """
    prefix = Path(prefix)
    program = prefix.with_suffix(".json")
    if not program.exists() and prefix.with_suffix(".pdmodel").exists():
        program = prefix.with_suffix(".pdmodel")
    return program, prefix.with_suffix(".pdiparams")


def export_layer(layer: paddle.nn.Layer, specs: list[InputSpec], prefix: str | Path) -> Path:
    """Trace `layer.forward` for `specs` and save the program and weights under `prefix`.

    The files are written to a temporary name first and renamed at the end, so an interrupted
    export never leaves a half-written program where the cache would find it.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    partial = prefix.with_name(prefix.name + f".partial-{os.getpid()}")
    was_training = layer.training
    layer.eval()
    try:
        static = paddle.jit.to_static(
            layer, input_spec=[spec.to_paddle() for spec in specs], full_graph=True
        )
        paddle.jit.save(static, str(partial))
    finally:
        if was_training:
            layer.train()
    for suffix in (".json", ".pdmodel", ".pdiparams"):
        written = partial.with_name(partial.name + suffix)
        if written.exists():
            written.replace(prefix.with_name(prefix.name + suffix))
    return prefix
