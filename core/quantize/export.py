"""Paddle UNet -> OpenVINO model for quantization: a static-shape program, converted the way the
OpenVINO runtime back end converts every exported program (paddiff.execution.onnx_convert:
portable attention, paddle2onnx on the graph without its weights, weights bound as constants
from the program's parameter file, `group_norm`'s epsilon kept right).

Fixed input shapes: NNCF calibrates and the quantized model runs for one input shape, which is
also what OpenVINO is fastest on.
"""

from __future__ import annotations

import json
from pathlib import Path


def unet_specs(config: dict, batch: int, latent_size: tuple[int, int], tokens: int = 77):
    from paddiff.execution.export import InputSpec

    return [
        InputSpec("sample", (batch, config["in_channels"], *latent_size)),
        InputSpec("timestep", (batch,)),
        InputSpec("encoder_hidden_states", (batch, tokens, config["cross_attention_dim"])),
    ]


def export_openvino(layer, specs, work_dir: str | Path):
    """(`layer` traced for `specs` as an `openvino.Model` in float32, {weight constant's name:
    state-dict key}). The program is written into `work_dir`, which must outlive the model (its
    weights are memory-mapped from the program's parameter file)."""
    import openvino as ov
    from paddiff.execution.export import export_layer, names_file, program_files
    from paddiff.execution.onnx_convert import bind_weights, graph_without_weights, paddle_to_onnx
    from paddiff.execution.portable import PORTABLE, program_variant
    from paddiff.execution.quiet import native_stderr_filtered

    work_dir = Path(work_dir)
    with program_variant(PORTABLE), native_stderr_filtered():  # Paddle's tracing logs
        prefix = export_layer(layer, specs, work_dir / "program")
    program, params = program_files(prefix)
    graph, weight_names = graph_without_weights(program, work_dir)
    onnx_file = work_dir / "unet.onnx"
    paddle_to_onnx(graph, onnx_file)
    model = ov.convert_model(str(onnx_file))
    bind_weights(model, params, weight_names)
    return model, json.loads(names_file(prefix).read_text(encoding="utf-8"))
