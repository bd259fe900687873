"""`quantize_model`: what `paddiff quantize` does, as a function."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from paddiff.quantize import calibration, folder, int8


def quantize_model(
    model,
    out_dir,
    *,
    scheme: str = int8.DEFAULT_SCHEME,
    prompts_file=None,
    height: int | None = None,
    width: int | None = None,
    steps: int = 10,
    images: int | None = None,
    samples: int = 32,
    seed: int = 0,
    log=print,
) -> dict:
    """Quantize the UNet of the model folder `model` into the new folder `out_dir`; returns
    the report also written to `out_dir/unet/quantization.json`.

    Calibration: one image per prompt (the first `images` of the list), `steps` steps at
    `height` x `width` (default: the model's native size), guidance 7.5; `samples` of the
    recorded UNet calls, spread over prompts and steps, calibrate NNCF.
    """
    model, out_dir = Path(model), Path(out_dir)
    int8.check_scheme(scheme)  # all cheap checks first: nothing is loaded for a bad request
    index = folder.check_source(model)
    folder.check_destination(out_dir, model)
    prompts = calibration.read_prompts(prompts_file, model)[: images or None]
    _require_openvino()

    from paddiff import load_pipeline

    started = time.perf_counter()
    pipe = load_pipeline(model, safety_filters=[])
    size = _native_size(pipe)
    height, width = height or size, width or size
    source = calibration.prompts_source(prompts_file, model)
    log(f"calibrating on {len(prompts)} prompts ({source}), {steps} steps, {width}x{height}")
    calls = calibration.record_unet_inputs(
        pipe, prompts, steps=steps, height=height, width=width, seed=seed
    )
    recorded = len(calls)
    chosen = calibration.spread(calls, samples)
    batch, _, latent_h, latent_w = chosen[0][0].shape
    tokens = chosen[0][2].shape[1]
    unet = pipe.denoiser
    for network in unet.networks():
        # back to the Layer: the weights return from the program, the predictor (and oneDNN's
        # copy of the weights) is dropped before the export makes more copies
        network.use_dynamic()
    del pipe, calls

    def write_unet(unet_dir: Path) -> dict:
        import openvino as ov
        from paddiff.quantize import export

        with tempfile.TemporaryDirectory(prefix="paddiff-quantize-", dir=unet_dir) as work:
            specs = export.unet_specs(unet.config, batch, (latent_h, latent_w), tokens)
            log("exporting the UNet (Paddle program -> ONNX -> OpenVINO)")
            float_model, names = export.export_openvino(unet.net, specs, work)
            layers = int8.weighted_layers(float_model, names)
            log(f"quantizing ({scheme}) on {len(chosen)} recorded UNet calls")
            quantized = int8.quantize(float_model, chosen, scheme, layers)
            sensitivity = int8.layer_sensitivity(float_model, quantized, layers, chosen[0])
            ov.save_model(quantized, str(unet_dir / "openvino_model.xml"))
            float_bytes = 4 * unet.runner.parameter_count()  # the source's float32 weights
            del float_model, quantized
        report = {
            "scheme": scheme,
            "scheme_description": int8.SCHEMES[scheme],
            "runtime": "openvino",
            "calibration": {
                "prompts": prompts,
                "prompts_from": source,
                "steps": steps,
                "height": height,
                "width": width,
                "recorded_calls": recorded,
                "samples": len(chosen),
            },
            "inputs": {"batch": batch, "latent_size": [latent_h, latent_w], "tokens": tokens},
            "kept_in_float": int8.kept_in_float(layers, scheme),
            "quantized_layers": len(layers) - len(int8.kept_in_float(layers, scheme)),
            "float32_weight_bytes": float_bytes,
            "int8_model_bytes": (unet_dir / "openvino_model.bin").stat().st_size,
            "layer_sensitivity": sensitivity,
        }
        config = {
            **unet.config,
            "_class_name": "OpenVINOInt8UNet",
            "_paddiff_quantization": {
                "scheme": scheme,
                "batch": batch,
                "latent_size": [latent_h, latent_w],
                "tokens": tokens,
                "image_size": [height, width],
            },
        }
        (unet_dir / "config.json").write_text(json.dumps(config, indent=2))
        (unet_dir / "quantization.json").write_text(
            json.dumps(report, indent=1, ensure_ascii=False)
        )
        return report

    report = {}

    def write_and_keep(unet_dir):
        report.update(write_unet(unet_dir))
        return report

    folder.write_folder(model, out_dir, index, write_and_keep)
    log(
        f"wrote {out_dir} in {time.perf_counter() - started:.0f} s: UNet "
        f"{report['int8_model_bytes'] / 2**20:.1f} MiB (float32 "
        f"{report['float32_weight_bytes'] / 2**20:.1f} MiB), "
        f"{len(report['kept_in_float'])} layers kept in float32"
    )
    return report


def _native_size(pipe) -> int:
    config = getattr(pipe.denoiser, "config", None) or {}
    factor = getattr(pipe.vae, "downsample_factor", 8)
    return int(config.get("sample_size", 64)) * factor


def _require_openvino() -> None:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
        import paddle2onnx  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"paddiff quantize needs OpenVINO, NNCF and paddle2onnx ({exc.name} is missing): "
            'pip install "paddiff[int8]" (docs/quantization.md)'
        ) from exc
