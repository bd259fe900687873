"""`paddiff quantize`: post-training INT8 quantization of a model's UNet.

The route that runs INT8 here (docs/quantization.md has the measurements):
paddiff's Paddle UNet is exported as a static program with plain attention ops
(`paddiff.execution.export.plain_attention`), converted by paddle2onnx to ONNX, read by OpenVINO,
and quantized by NNCF on UNet inputs recorded from real denoising runs (`calibration.py`). The
result is a model folder whose `unet/` holds the INT8 OpenVINO model; the
`OpenVINOInt8UNet` denoiser plugin runs it, so `--model OUT_DIR` and `load_pipeline` need
nothing else. Paddle's own INT8 path (paddle.quantization PTQ -> QDQ PIR program -> Paddle
Inference) does not run in Paddle 3.3.1 (docs/quantization.md, "Paddle's route").

- `export.py`      Paddle UNet -> static program -> ONNX -> OpenVINO model
- `calibration.py` the built-in bilingual prompts; UNet inputs recorded during generations
- `int8.py`        schemes, NNCF quantization, per-layer sensitivity
- `folder.py`      writing and checking quantized model folders
"""

QUANTIZED_UNET_CLASS = "OpenVINOInt8UNet"
