"""Paddle UNet -> OpenVINO model, through a static-shape program and paddle2onnx.

paddle2onnx 2.1 cannot convert what paddiff exports for Paddle Inference: `self_dp_attention`
(the fused CPU attention) and, with dynamic sizes, `shape64` and `if` ops. Fixed input shapes
and plain attention leave only ops it knows, so the OpenVINO model is made for one input shape.

One paddle2onnx bug is repaired here: it reads `group_norm`'s epsilon (a float64 attribute in
Paddle 3's PIR programs) as a float32, so the ONNX InstanceNormalization it writes gets whatever
bits happen to be there (1.7e-44, 0.0: seen here, different in every run), which made the
embedded UNet's output wrong by 70% of its range. The right values are copied from the program.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path


def unet_specs(config: dict, batch: int, latent_size: tuple[int, int], tokens: int = 77):
    from paddiff.execution.export import InputSpec

    return [
        InputSpec("sample", (batch, config["in_channels"], *latent_size)),
        InputSpec("timestep", (batch,)),
        InputSpec("encoder_hidden_states", (batch, tokens, config["cross_attention_dim"])),
    ]


def export_onnx(layer, specs, onnx_file: str | Path) -> dict[str, str]:
    """`layer` traced for `specs` (plain attention) and converted to the ONNX file `onnx_file`.
    Returns {weight name in the ONNX model: the layer's state-dict key}."""
    import onnx
    import paddle2onnx
    from paddiff.execution.export import export_layer, names_file, plain_attention, program_files

    onnx_file = Path(onnx_file)
    folder = Path(tempfile.mkdtemp(prefix="paddiff-onnx-", dir=onnx_file.parent))
    try:
        with plain_attention():
            prefix = export_layer(layer, specs, folder / "program")
        program, params = program_files(prefix)
        # the SD 1.5 UNet (3.4 GB) is over protobuf's 2 GB limit: weights go to a side file
        external = onnx_file.with_suffix(".weights")
        # no optimizer: the default one (Polygraphy) pip-installs onnxruntime and sympy at run
        # time and cannot hold a model over 2 GB;
        # OpenVINO folds the constants itself
        paddle2onnx.export(
            str(program),
            str(params),
            str(onnx_file),
            opset_version=17,
            external_file=str(external),
            enable_optimize=False,
            optimize_tool="none",
        )
        model = onnx.load(str(onnx_file), load_external_data=False)
        repair_group_norm_epsilon(model, group_norm_epsilons(program))
        onnx.save(model, str(onnx_file))
        return json.loads(names_file(prefix).read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def group_norm_epsilons(program_json: Path) -> list[float]:
    """The epsilon of every `group_norm` op of a PIR program (JSON), in program order."""
    epsilons = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("#") == "1.group_norm":
                for attribute in node.get("A", []):
                    if attribute.get("N") == "epsilon":
                        epsilons.append(float(attribute["AT"]["D"]))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(json.loads(Path(program_json).read_text(encoding="utf-8")))
    return epsilons


def repair_group_norm_epsilon(model, epsilons: list[float]) -> None:
    """Set the epsilon of the InstanceNormalization nodes paddle2onnx made from group_norm ops
    (one each, in the same order) to the program's values."""
    nodes = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    if len(nodes) != len(epsilons):
        raise RuntimeError(
            f"paddle2onnx wrote {len(nodes)} InstanceNormalization nodes for "
            f"{len(epsilons)} group_norm ops; cannot repair their epsilon"
        )
    for node, epsilon in zip(nodes, epsilons, strict=True):
        for attribute in node.attribute:
            if attribute.name == "epsilon":
                attribute.f = epsilon


def export_openvino(layer, specs, work_dir: str | Path):
    """(`layer` traced for `specs` as an `openvino.Model` in float32, {weight name: state-dict
    key}). The intermediate ONNX files are written into `work_dir`, which must outlive the
    model (OpenVINO may read its weights from there lazily)."""
    import openvino as ov

    onnx_file = Path(work_dir) / "unet.onnx"
    names = export_onnx(layer, specs, onnx_file)
    return ov.Core().read_model(str(onnx_file)), names
