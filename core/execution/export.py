"""Export a dynamic-graph Layer to a Paddle Inference program, and read its weights back."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle


@dataclass(frozen=True)
class InputSpec:
    """One input of an exported program; `None` in `shape` marks a dimension left dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def to_paddle(self) -> paddle.static.InputSpec:
        return paddle.static.InputSpec(list(self.shape), self.dtype, self.name)


def fused_self_attention_supported() -> bool:
    """Whether exported programs use Paddle's fused CPU self-attention op on this machine.

    `self_dp_attention` (Paddle's AVX-512 kernel, static programs only) computes softmax(q k^T)v
    in blocks without materialising the scores: for SD 1.5's 4096-token self-attention at 64x64
    latents, 216 against 768 ms for matmul + softmax + matmul, and 15 against 30 ms at 1024
    tokens, results equal within 3e-7 (docs/performance.md). It has no GPU kernel and needs
    AVX-512, so other machines export the plain form (the export cache key records which).
    Networks ask this while they are traced; it lives here because it is a property of the
    machine and the runtime, not of any one network.
    """
    from paddiff.execution.portable import exporting_portable
    from paddle.base import core

    if exporting_portable():  # a program for OpenVINO's converter, which lacks that op
        return False
    cuda = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    return not cuda and core.supports_avx512f()


def program_files(prefix: str | Path) -> tuple[Path, Path]:
    """(program, parameters) files that `paddle.jit.save(prefix)` writes.

    Paddle 3 writes the program as `prefix.json` (PIR); older releases wrote `prefix.pdmodel`.
    """
    program = _with_suffix(prefix, ".json")
    if not program.exists() and _with_suffix(prefix, ".pdmodel").exists():
        program = _with_suffix(prefix, ".pdmodel")
    return program, _with_suffix(prefix, ".pdiparams")


def _with_suffix(prefix: str | Path, suffix: str) -> Path:
    prefix = Path(prefix)  # appended, not replaced: "program.partial-12" + ".json"
    return prefix.with_name(prefix.name + suffix)


def names_file(prefix: str | Path) -> Path:
    """{program variable name: the Layer's state-dict key} for every weight the program holds."""
    return _with_suffix(
        prefix, ".weight-names"
    )  # JSON, but not *.json: jit.load takes any *.json in the folder for the program


_TRACING = threading.Lock()


def export_layer(layer: paddle.nn.Layer, specs: list[InputSpec], prefix: str | Path) -> Path:
    """Trace `layer.forward` for `specs` and save the program and weights under `prefix`.

    Memory: tracing shares the Layer's parameters and `paddle.jit.save` writes them one by one,
    so exporting the SD 1.5 UNet (3.4 GB) added about 0.1 GB to the process, not a second model.
    The files are written to a temporary name first and renamed at the end (the program last), so
    an interrupted export never leaves a half-written program where the cache would find it.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    partial = prefix.with_name(prefix.name + f".partial-{os.getpid()}")
    was_training = layer.training
    layer.eval()
    try:
        with _TRACING:  # one trace at a time in the process (_forget_unfinished_traces)
            _forget_unfinished_traces()
            try:
                static = paddle.jit.to_static(
                    layer, input_spec=[spec.to_paddle() for spec in specs], full_graph=True
                )
                paddle.jit.save(static, str(partial))
            except BaseException:
                _forget_unfinished_traces()
                raise
    finally:
        # to_static replaced `layer.forward` by a traced function that keeps its program alive;
        # put the Python method back so later dynamic-graph calls really run the dynamic graph.
        vars(layer).pop("forward", None)
        layer._original_funcs.pop("forward", None)
        if was_training:
            layer.train()
    program, _ = program_files(partial)
    names_file(partial).write_text(json.dumps(_saved_names(layer, program), indent=0))
    for suffix in (".weight-names", ".pdiparams", ".json", ".pdmodel"):
        written = _with_suffix(partial, suffix)
        if written.exists():
            written.replace(_with_suffix(prefix, suffix))
    return prefix


def _forget_unfinished_traces() -> None:
    """Drop what Paddle's tracer keeps of traces that never finished.

    dy2static records the parameters a trace uses under id(program) and hands them over when
    the trace completes; a trace that raised leaves its record behind, holding its tensors. A
    later program that happens to get the same id inherits them, and `paddle.jit.save` then
    fails with a KeyError naming one (seen in CI: 'linear_6939.b_0' while exporting a fresh
    UNet, after an earlier test's export had failed). Exports run one at a time and nothing
    else traces meanwhile, so at their start and after a failure every record is stale."""
    try:  # Paddle's private tables (3.3.1); another version may keep them elsewhere
        from paddle.jit.dy2static import parameter_recorder
    except ImportError:
        return
    recorder = getattr(parameter_recorder, "_global_parameter_recorder", None)
    inplace = getattr(parameter_recorder, "_global_inplace_map", None)
    for owner, table in (
        (recorder, "params_dict"),
        (recorder, "tensor2value"),
        (inplace, "params_dict"),
    ):
        records = getattr(owner, table, None)
        if isinstance(records, dict):
            records.clear()


def _saved_names(layer: paddle.nn.Layer, program: Path) -> dict[str, str]:
    """The Layer's parameters that the saved program holds (Paddle drops the unused ones, e.g.
    the decoder's weights from an exported VAE encoder), by program variable name.

    Variable names come from Paddle's per-process name counter, so they differ between
    processes; the state-dict key is what maps a cached program back onto a Layer."""
    text = program.read_text(encoding="utf-8") if program.suffix == ".json" else None
    names = {}
    for key, param in layer.named_parameters():
        if text is None or f'"{param.name}"' in text:
            names[param.name] = key
    return names


def load_exported_weights(prefix: str | Path) -> dict[str, np.ndarray]:
    """The weights of an exported program, by the state-dict keys of the Layer it came from."""
    names = json.loads(names_file(prefix).read_text(encoding="utf-8"))
    # jit.load renames each variable `name` to `name_0` in a fresh name scope.
    with paddle.utils.unique_name.guard():
        loaded = paddle.jit.load(str(prefix))
    weights = {}
    for param in loaded.parameters():
        variable = param.name if param.name in names else param.name.removesuffix("_0")
        if variable not in names:
            raise ValueError(f"{prefix}: weight {param.name} is not in {names_file(prefix)}")
        weights[names[variable]] = param.numpy()
    return weights
