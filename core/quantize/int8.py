"""INT8 schemes and NNCF post-training quantization of an OpenVINO UNet.

Schemes (`--scheme`):
- "int8-mixed" (default): every convolution and matrix product in INT8 except the layers known
  to suffer (the first and last convolution, the timestep embedding MLP and each block's
  projection of it, `time_emb_proj`), which stay float32; the timestep layers are a few
  (batch x 1280) products, so keeping them costs no time;
  attention's softmax runs in float in both schemes (NNCF's transformer rules do not quantize
  softmax inputs).
- "int8-mixed-ffn": "int8-mixed", and the output projection of every transformer block's
  feed-forward (`ff.net.2`) also stays float32. At SD 1.5 size those were the five most
  sensitive layers of the calibration run (relative output error 0.085-0.089,
  docs/quantization.md): they read the GELU-gated activations, whose outliers INT8 clips.
- "int8": every convolution and matrix product in INT8.
"""

from __future__ import annotations

import numpy as np

SCHEMES = {
    "int8-mixed": "INT8 except conv_in, conv_out, the time embedding and time_emb_proj "
    "(kept float32)",
    "int8-mixed-ffn": "int8-mixed, and every feed-forward output projection (ff.net.2) kept "
    "float32",
    "int8": "every convolution and matrix product INT8",
}
DEFAULT_SCHEME = "int8-mixed"
# layers "int8-mixed" keeps in float32: the first conv sees raw latents, the last writes the
# prediction, the timestep MLP and its per-block projections condition every block (on the
# embedded model those projections were the most sensitive layers: 0.34-0.49 relative error)
KEPT_IN_FLOAT = ("conv_in", "conv_out", "time_embedding", "time_emb_proj")
WEIGHTED_OPS = ("Convolution", "MatMul")


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown quantization scheme {scheme!r}; schemes: "
            + "; ".join(f"{name} ({what})" for name, what in SCHEMES.items())
        )
    return scheme


def weighted_layers(model, weight_names: dict[str, str]) -> dict[str, str]:
    """{OpenVINO op name: the Paddle layer's state-dict key} for every convolution and matrix
    product whose weight comes from the layer (found through the weight's constant name, which
    paddle2onnx keeps from the Paddle program)."""
    layers = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in WEIGHTED_OPS:
            continue
        for source in (op.input_value(i).get_node() for i in range(op.get_input_size())):
            # the weight may reach the op through a Convert or a Reshape of the constant
            while source.get_type_name() != "Constant" and source.get_input_size() == 1:
                source = source.input_value(0).get_node()
            key = weight_names.get(source.get_friendly_name())
            if key is not None:
                layers[op.get_friendly_name()] = key.removesuffix(".weight")
                break
    return layers


def quantize(model, samples: list[list[np.ndarray]], scheme: str, layers: dict[str, str]):
    """`model` (float) quantized by NNCF on `samples` (UNet inputs in input order)."""
    import logging

    import nncf

    check_scheme(scheme)
    nncf.set_log_level(logging.ERROR)  # its per-op INFO lines mean nothing to a user
    kept = [op for op, key in layers.items() if _kept(key, scheme)]
    return nncf.quantize(
        model,
        nncf.Dataset(samples),
        subset_size=len(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(names=kept, validate=False) if kept else None,
    )


def kept_in_float(layers: dict[str, str], scheme: str) -> list[str]:
    """The layers (state-dict keys) `scheme` leaves in float32."""
    return sorted(key for key in layers.values() if _kept(key, scheme))


def _kept(key: str, scheme: str) -> bool:
    if scheme == "int8":
        return False
    if any(part in KEPT_IN_FLOAT for part in key.split(".")):
        return True
    return scheme == "int8-mixed-ffn" and ".ff.net.2." in f".{key}."


def layer_sensitivity(float_model, int8_model, layers, sample, threads: int = 2):
    """Relative error of each weighted layer's output in the INT8 model against the float model
    on one calibration input: {state-dict key: ||int8 - float|| / ||float||}, worst first.
    Errors accumulate through the network, so a layer's figure includes what reached it."""
    import openvino as ov

    def outputs_of(model):
        model = model.clone()
        ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        names = [name for name in layers if name in ops]
        model.add_outputs([ops[name].output(0) for name in names])
        compiled = ov.Core().compile_model(
            model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        )
        result = compiled(sample)
        first = len(model.outputs) - len(names)
        return {name: result[compiled.outputs[first + i]] for i, name in enumerate(names)}

    reference, quantized = outputs_of(float_model), outputs_of(int8_model)
    errors = {}
    for name, value in reference.items():
        if name in quantized:
            norm = float(np.linalg.norm(value)) or 1.0
            errors[layers[name]] = float(np.linalg.norm(quantized[name] - value)) / norm
    return dict(sorted(errors.items(), key=lambda item: -item[1]))
