"""Convert one exported Paddle program to OpenVINO IR (run as a child process by
`paddiff.plugins.runtimes.openvino.converted_model`):

    python -m paddiff.plugins.runtimes.openvino_convert PREFIX [--float16-weights]

Route: paddle2onnx writes the program's graph as ONNX (opset 17) into a temporary folder beside
it, OpenVINO's ONNX front end reads that, and the weights are bound from the program's
parameter file (`paddiff.execution.onnx_convert`: the weights never go through ONNX, whose
protobuf stops at 2 GB); the IR goes to PREFIX.openvino.xml / .bin. With --float16-weights
(for bf16 runs) the weights are stored as float16 in PREFIX.openvino-f16.xml / .bin, made from
the float32 IR when that exists (no second paddle2onnx run). (OpenVINO 2026.4's own
Paddle front end does not recognise Paddle 3's PIR programs, `program.json`: "Cannot recognize
input model".)

The IR is written under a temporary name and renamed into place (the .xml last), so a process
reading the cache meanwhile sees a whole IR or none.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from paddiff.plugins.runtimes.openvino import ir_path


def convert(prefix, float16_weights: bool = False) -> Path:
    import openvino as ov

    target = ir_path(prefix, "bf16" if float16_weights else "fp32")
    full = ir_path(prefix)
    if float16_weights and full.exists() and full.with_suffix(".bin").exists():
        model = ov.Core().read_model(str(full))
    else:
        model = _from_program(prefix, target.parent)
    partial = target.with_name(f"program.partial-{os.getpid()}.xml")
    # float32 IR: the precision is chosen when compiling; float16 for bf16 runs (ir_path says why)
    ov.save_model(model, str(partial), compress_to_fp16=float16_weights)
    del model
    partial.with_suffix(".bin").replace(target.with_suffix(".bin"))
    partial.replace(target)
    return target


def _from_program(prefix, scratch: Path):
    import openvino as ov
    from paddiff.execution.export import program_files
    from paddiff.execution.onnx_convert import bind_weights, graph_without_weights, paddle_to_onnx

    program, params = program_files(prefix)
    if not program.exists():
        raise FileNotFoundError(f"no exported program at {prefix} (expected {program})")
    if program.suffix != ".json":
        raise RuntimeError(f"{program.name} is not a PIR program (program.json)")
    with tempfile.TemporaryDirectory(prefix="paddiff-onnx-", dir=scratch) as folder:
        folder = Path(folder)
        graph, weight_names = graph_without_weights(program, folder)
        onnx_file = folder / "program.onnx"
        paddle_to_onnx(graph, onnx_file)
        model = ov.convert_model(str(onnx_file))
        bind_weights(model, params, weight_names)  # memory-mapped: valid after the folder goes
    return model


if __name__ == "__main__":
    convert(sys.argv[1], float16_weights="--float16-weights" in sys.argv[2:])
