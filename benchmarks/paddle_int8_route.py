"""Paddle's own INT8 route, tried on a small network: does Paddle Inference run what
`paddle.quantization.PTQ` writes? (docs/quantization.md, "Routes measured")

    python benchmarks/paddle_int8_route.py [--work DIR] 2>/dev/null | grep -v "PIR pass"

A convolution + linear + GELU network is quantized with PTQ (absmax observers, 8 bits),
calibrated on random inputs, converted and saved with `paddle.jit.save`; then Paddle Inference
loads the program in four configurations (oneDNN on / off, oneDNN INT8 on, IR optimisation off)
and runs it. Prints, per configuration, the largest difference from the dynamic-graph
quantized network, or the error Paddle raised.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def build_network():
    import paddle

    class Small(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(4, 16, 3, padding=1)
            self.linear = paddle.nn.Linear(16, 8)

        def forward(self, x):
            h = paddle.nn.functional.gelu(self.conv(x))  # [b, 16, h, w]
            return self.linear(h.mean(axis=[2, 3]))

    paddle.seed(0)
    return Small().eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    import paddle
    from paddle.quantization import PTQ, QuantConfig
    from paddle.quantization.observers import AbsmaxObserver

    print("paddle", paddle.__version__)
    work = args.work or Path(tempfile.mkdtemp(prefix="paddle-int8-"))
    ptq = PTQ(
        QuantConfig(activation=AbsmaxObserver(quant_bits=8), weight=AbsmaxObserver(quant_bits=8))
    )
    observed = ptq.quantize(build_network(), inplace=False)
    rng = np.random.default_rng(0)
    for _ in range(8):  # calibration
        observed(paddle.to_tensor(rng.standard_normal((2, 4, 16, 16)).astype("float32")))
    quantized = ptq.convert(observed, inplace=False)
    x = rng.standard_normal((2, 4, 16, 16)).astype("float32")
    expected = quantized(paddle.to_tensor(x)).numpy()
    prefix = str(work / "small_int8")
    spec = [paddle.static.InputSpec([2, 4, 16, 16], "float32", "x")]
    paddle.jit.save(quantized, prefix, input_spec=spec)
    files = sorted(p.name for p in work.iterdir())
    print("saved:", ", ".join(files))

    configurations = {
        "oneDNN": dict(onednn=True, int8=False, ir=True),
        "oneDNN + enable_onednn_int8": dict(onednn=True, int8=True, ir=True),
        "oneDNN, IR optimisation off": dict(onednn=True, int8=False, ir=False),
        "no oneDNN": dict(onednn=False, int8=False, ir=True),
    }
    model_file = next(str(work / f) for f in files if f.endswith((".json", ".pdmodel")))
    for name, options in configurations.items():
        config = paddle.inference.Config(model_file, prefix + ".pdiparams")
        config.disable_gpu()
        if options["onednn"]:
            config.enable_onednn()
        else:
            config.disable_onednn()
        if options["int8"]:
            config.enable_onednn_int8()
        config.switch_ir_optim(options["ir"])
        try:
            predictor = paddle.inference.create_predictor(config)
            handle = predictor.get_input_handle(predictor.get_input_names()[0])
            handle.copy_from_cpu(x)
            predictor.run()
            out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
            print(f"{name}: ran; largest difference {np.abs(out - expected).max():.3g}")
        except Exception as exc:  # what Paddle raises is the finding
            message = str(exc).strip().splitlines()
            summary = next((line for line in message if "Error" in line), message[0])
            print(f"{name}: {type(exc).__name__}: {summary[:200]}")


if __name__ == "__main__":
    main()
