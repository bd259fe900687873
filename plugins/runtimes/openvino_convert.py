"""Convert one exported Paddle program to OpenVINO IR (run as a child process by
`paddiff.plugins.runtimes.openvino.converted_model`):

    python -m paddiff.plugins.runtimes.openvino_convert PREFIX

Route: paddle2onnx writes the program as ONNX (opset 17) into a temporary folder beside it, and
OpenVINO's ONNX front end reads that; the IR goes to PREFIX.openvino.xml / .bin. (OpenVINO
2026.4's own Paddle front end does not recognise Paddle 3's PIR programs, `program.json`:
"Cannot recognize input model".) The IR is written under a temporary name and renamed into
place (the .xml last), so a process reading the cache meanwhile sees a whole IR or none.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from paddiff.plugins.runtimes.openvino import ir_path


def convert(prefix) -> Path:
    import openvino as ov
    from paddiff.execution.export import program_files

    target = ir_path(prefix)
    program, params = program_files(prefix)
    if not program.exists():
        raise FileNotFoundError(f"no exported program at {prefix} (expected {program})")
    with tempfile.TemporaryDirectory(prefix="paddiff-onnx-", dir=target.parent) as folder:
        onnx_file = Path(folder) / "program.onnx"
        paddle_to_onnx(readable_program(program, Path(folder)), params, onnx_file)
        model = ov.convert_model(str(onnx_file))
        partial = target.with_name(f"program.partial-{os.getpid()}.xml")
        # weights stay float32 in the file: the precision is chosen when compiling
        ov.save_model(model, str(partial), compress_to_fp16=False)
        del model
    partial.with_suffix(".bin").replace(target.with_suffix(".bin"))
    partial.replace(target)
    return target


def readable_program(program: Path, folder: Path) -> Path:
    """A copy of a PIR program that paddle2onnx 2.1.0 converts right.

    Paddle 3 stores `group_norm`'s epsilon as a float64 attribute; paddle2onnx reads it as a
    float32 and writes whatever those bits give (seen: 9e+32, or a plausible value by luck, so
    the same program converted twice gave two different, wrong, UNets). Stored as float32 (as
    `layer_norm`'s is), it arrives intact.
    """
    if program.suffix != ".json":
        return program
    document = json.loads(program.read_text(encoding="utf-8"))
    retyped = 0

    def visit(node) -> None:
        nonlocal retyped
        if isinstance(node, dict):
            if node.get("#") == "1.group_norm":
                for attribute in node.get("A", []):
                    if attribute.get("N") == "epsilon" and attribute["AT"]["#"] == "0.a_f64":
                        attribute["AT"]["#"] = "0.a_f32"
                        retyped += 1
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)
    if not retyped:
        return program
    copy = folder / program.name
    copy.write_text(json.dumps(document), encoding="utf-8")
    return copy


def paddle_to_onnx(program: Path, params: Path, onnx_file: Path) -> None:
    """paddle2onnx on one program. Its optimiser (polygraphy) stays off: it pip-installs what
    it misses (onnxruntime, which upgrades protobuf past paddlehub's 3.20 pin), and OpenVINO
    folds constants itself."""
    import paddle2onnx

    paddle2onnx.export(
        str(program),
        str(params),
        str(onnx_file),
        opset_version=17,
        enable_onnx_checker=False,  # its checker loads the whole model into protobuf
        enable_optimize=False,
        optimize_tool="None",
        # weights in a file of their own: ONNX's protobuf stops at 2 GB
        external_file=str(onnx_file.with_suffix(".data")),
    )
    if not onnx_file.exists():
        raise RuntimeError(f"paddle2onnx wrote no {onnx_file.name} for {program}")


if __name__ == "__main__":
    convert(sys.argv[1])
