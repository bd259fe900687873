"""A Paddle program converted to ONNX for other runtimes, without its weights going through ONNX.

paddle2onnx 2.1.0 builds the whole model as one protobuf before it writes weights out as
external data, and protobuf stops at 2 GB, so a model of SD 1.5's size (3.4 GB of weights) came
out as an empty file. `graph_without_weights` gives paddle2onnx a copy of the program in which
every parameter op is an input of the same name, type and shape (a graph of a few hundred kB);
`bind_weights` puts the weights back in OpenVINO as constants read from the program's own
parameter file. Used by the OpenVINO runtime back end (plugins/runtimes/openvino_convert.py)
and by `paddiff quantize` (paddiff.quantize.export).
"""

from __future__ import annotations

import json
from pathlib import Path

#: PIR's type names -> the `dtype` attribute of a `data` op
PIR_DTYPES = {
    "0.t_f32": "float32",
    "0.t_f16": "float16",
    "0.t_bf16": "bfloat16",
    "0.t_f64": "float64",
    "0.t_i64": "int64",
    "0.t_i32": "int32",
    "0.t_bool": "bool",
}


def graph_without_weights(program: Path, folder: Path) -> tuple[Path, list[str]]:
    """A copy of the PIR program in `folder` that paddle2onnx converts right and small: every
    parameter op becomes a `data` op (an input) of the same name, type and shape; the names,
    in program order.

    Also: Paddle 3 stores `group_norm`'s epsilon as a float64 attribute; paddle2onnx reads it as
    a float32 and writes whatever those bits give (seen: 9e+32, or a plausible value by luck, so
    the same program converted twice gave two different, wrong, UNets). Stored as float32 (as
    `layer_norm`'s is), it arrives intact.
    """
    document = json.loads(program.read_text(encoding="utf-8"))
    block = document["program"]["regions"][0]["blocks"][0]
    weight_names = []
    ops = []
    for op in block["ops"]:
        if op["#"] == "p":  # builtin.parameter: attributes [.., .., .., name], one output
            weight_names.append(op["A"][3])
            ops.append(_input_op(op["A"][3], op["O"]))
        else:
            ops.append(op)
    block["ops"] = ops
    _retype_group_norm_epsilon(document)
    copy = folder / program.name
    copy.write_text(json.dumps(document), encoding="utf-8")
    return copy, weight_names


def _input_op(name: str, output: dict) -> dict:
    """A PIR `pd_op.data` op named `name` with the parameter op's output (same value id)."""
    type_name, shape = output["TT"]["D"][0]["#"], output["TT"]["D"][1]
    if type_name not in PIR_DTYPES:
        raise RuntimeError(f"weight {name} has a type ({type_name}) the converter does not know")
    attributes = {
        "name": {"#": "0.a_str", "D": name},
        "shape": {"#": "1.a_intarray", "D": shape},
        "dtype": {"#": "1.a_dtype", "D": PIR_DTYPES[type_name]},
        "place": {"#": "1.a_place", "D": [0, 0, ""]},
    }
    stop_gradient = {"#": "0.a_array", "D": [{"#": "0.a_bool", "D": True}]}
    return {
        "#": "1.data",
        "A": [{"AT": value, "N": key} for key, value in attributes.items()],
        "I": [],
        "O": [output],
        "OA": [{"AT": stop_gradient, "N": "stop_gradient"}],
    }


def _retype_group_norm_epsilon(node) -> None:
    if isinstance(node, dict):
        if node.get("#") == "1.group_norm":
            for attribute in node.get("A", []):
                if attribute.get("N") == "epsilon" and attribute["AT"]["#"] == "0.a_f64":
                    attribute["AT"]["#"] = "0.a_f32"
        for value in node.values():
            _retype_group_norm_epsilon(value)
    elif isinstance(node, list):
        for value in node:
            _retype_group_norm_epsilon(value)


def paddle_to_onnx(program: Path, onnx_file: Path) -> None:
    """paddle2onnx on a program without weights (an empty parameter file). Its optimiser
    (polygraphy) stays off: it pip-installs what it misses (onnxruntime, which upgrades protobuf
    past paddlehub's 3.20 pin), and OpenVINO folds constants itself."""
    import paddle2onnx
    from paddiff.execution.quiet import native_output_filtered, paddle2onnx_line

    no_weights = onnx_file.with_name("empty.pdiparams")
    no_weights.write_bytes(b"")
    with native_output_filtered(1, paddle2onnx_line):  # its progress lines, on stdout
        _export(paddle2onnx, program, no_weights, onnx_file)
    if not onnx_file.exists() or onnx_file.stat().st_size == 0:
        raise RuntimeError(f"paddle2onnx wrote no {onnx_file.name} for {program}")


def _export(paddle2onnx, program: Path, no_weights: Path, onnx_file: Path) -> None:
    paddle2onnx.export(
        str(program),
        str(no_weights),
        str(onnx_file),
        opset_version=17,
        enable_onnx_checker=False,
        enable_optimize=False,
        optimize_tool="None",
    )


def bind_weights(model, params: Path, weight_names: list[str]) -> None:
    """Replace the model's inputs named in `weight_names` by constants holding the weights of
    the parameter file `params` (memory-mapped: OpenVINO copies each when it saves the IR)."""
    import openvino as ov
    from paddiff.execution import param_file

    entries = param_file.index(params, weight_names)
    unbound = set(weight_names)
    for parameter in list(model.get_parameters()):
        name = parameter.output(0).get_any_name()
        if name not in entries:
            continue  # a real input
        constant = ov.op.Constant(param_file.mapped(params, entries[name]), shared_memory=True)
        constant.set_friendly_name(name)  # the Paddle variable name (paddiff.quantize reads it)
        parameter.output(0).replace(constant.output(0))
        model.remove_parameter(parameter)
        unbound.discard(name)
    if unbound:
        raise RuntimeError(
            f"{len(unbound)} weights of {params.name} are not inputs of the ONNX model "
            f"(first: {sorted(unbound)[:3]})"
        )
    model.validate_nodes_and_infer_types()
