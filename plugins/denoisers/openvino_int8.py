"""Denoiser plugin for the INT8 UNet `paddiff quantize` writes: an OpenVINO model in `unet/`.

The folder's `unet/config.json` is the float UNet's config plus `_paddiff_quantization` (scheme,
the input shapes the model was made for); `unet/openvino_model.xml/.bin` hold the INT8 network.
The model has fixed input shapes (see paddiff.quantize.export): other batch sizes are run in
pieces of the model's batch, other latent sizes or prompt lengths are refused with the fix.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from paddiff.interfaces import Denoiser

MODEL_FILE = "openvino_model.xml"


def cpu_has_vnni() -> bool | None:
    """Whether this CPU has the VNNI INT8 dot-product instructions (None: cannot tell)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


class OpenVINOInt8UNet(Denoiser):
    """The INT8 UNet of a `paddiff quantize` folder, run by OpenVINO on the CPU."""

    def __init__(self, compiled, config: dict, prediction_type: str = "epsilon"):
        self.compiled = compiled
        self.config = config
        self.quantization = config["_paddiff_quantization"]
        self.in_channels = config["in_channels"]
        self.out_channels = config["out_channels"]
        self.prediction_type = prediction_type
        self.batch = self.quantization["batch"]
        self.latent_size = tuple(self.quantization["latent_size"])
        self.tokens = self.quantization["tokens"]

    @classmethod
    def from_pretrained(cls, path, prediction_type: str | None = None, threads=None, **options):
        path = Path(path)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if "_paddiff_quantization" not in config or not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is not an INT8 UNet written by `paddiff quantize` "
                f"(needs config.json with _paddiff_quantization and {MODEL_FILE})"
            )
        try:
            import openvino as ov
        except ImportError as exc:
            raise ImportError(
                f"{path} holds an INT8 OpenVINO UNet; install OpenVINO to run it: "
                "pip install openvino (docs/quantization.md)"
            ) from exc
        if cpu_has_vnni() is False:
            warnings.warn(
                "paddiff: this CPU has no VNNI instructions; OpenVINO runs the INT8 UNet without "
                "them, correctly but possibly slower than the float model (docs/quantization.md)",
                stacklevel=2,
            )
        from paddiff.execution.predictor import default_threads

        core = ov.Core()
        model = core.read_model(str(path / MODEL_FILE))
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": int(threads or default_threads()),
            },
        )
        if prediction_type is None:
            scheduler = path.parent / "scheduler" / "scheduler_config.json"
            prediction_type = "epsilon"
            if scheduler.is_file():
                prediction_type = json.loads(scheduler.read_text(encoding="utf-8")).get(
                    "prediction_type", "epsilon"
                )
        return cls(compiled, config, prediction_type)

    def networks(self) -> list:
        return []  # nothing for paddiff.execution to export: OpenVINO runs this one

    def __call__(self, latents, timestep, conditioning):
        latents = np.asarray(latents, dtype=np.float32)
        conditioning = np.asarray(conditioning, dtype=np.float32)
        batch = latents.shape[0]
        if latents.ndim != 4 or latents.shape[1] != self.in_channels:
            raise ValueError(
                f"latents of shape {latents.shape}; this UNet expects (batch, "
                f"{self.in_channels}, h, w)"
            )
        if tuple(latents.shape[2:]) != self.latent_size or conditioning.shape[1] != self.tokens:
            h, w = self.latent_size
            image = self.quantization.get("image_size")
            pixels = f" ({image[1]}x{image[0]} images)" if image else ""
            raise ValueError(
                f"this INT8 UNet was quantized for {h}x{w} latents{pixels} "
                f"and {self.tokens}-token prompts, not {latents.shape[2]}x{latents.shape[3]} "
                f"and {conditioning.shape[1]} tokens; quantize again with --height/--width"
            )
        timesteps = np.asarray(timestep, dtype=np.float32).reshape(-1)
        if timesteps.size not in (1, batch):
            raise ValueError(f"{timesteps.size} timesteps for a batch of {batch}")
        timesteps = np.ascontiguousarray(np.broadcast_to(timesteps, (batch,)))
        outputs = []
        for start in range(0, batch, self.batch):
            piece = slice(start, start + self.batch)
            arrays = [latents[piece], timesteps[piece], conditioning[piece]]
            short = self.batch - arrays[0].shape[0]
            if short:  # pad the last piece to the model's batch, drop the padding after
                arrays = [np.concatenate([a, np.repeat(a[-1:], short, 0)]) for a in arrays]
            result = self.compiled(arrays)[self.compiled.outputs[0]]
            outputs.append(result[: self.batch - short])
        return np.concatenate(outputs)
