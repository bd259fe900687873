"""Write the SD 1.5-size UNet (random weights) that benchmarks/performance/unet_call.py times.

    python benchmarks/performance/unet_call_anchor_model.py OUT [--half]   (a torch + diffusers
    interpreter that also has `onnx`; see docs/performance.md, "One UNet call")

--half halves every block's width (215 M parameters instead of 860 M): the same layers and
shapes of activations per channel, for a run that stays under 4 GB of memory.

OUT receives:
  unet/            the diffusers folder (config + safetensors): what paddiff loads, so every
                   runtime in the benchmark runs the same weights;
  unet.onnx(+data) the same UNet exported by torch to ONNX (opset 17, static shapes
                   2x4x32x32, (2,), 2x77x768): what the OpenVINO and ONNX Runtime anchors run;
  inputs.npz       the inputs of the timed call (sample, timestep, encoder_hidden_states);
  torch.npz        diffusers' f32 output for those inputs (to check every runtime's numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel


def main(out: Path, half: bool = False) -> None:
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    # SD 1.5's UNet is diffusers' default configuration with CLIP ViT-L's 768-wide context.
    widths = (160, 320, 640, 640) if half else (320, 640, 1280, 1280)
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=768, block_out_channels=widths
    ).eval()
    unet.save_pretrained(out / "unet")
    rng = np.random.default_rng(0)
    inputs = {
        "sample": rng.standard_normal((2, 4, 32, 32), dtype=np.float32),
        "timestep": np.array([500.0, 500.0], dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, 768), dtype=np.float32),
    }
    np.savez(out / "inputs.npz", **inputs)
    tensors = tuple(torch.from_numpy(v) for v in inputs.values())
    with torch.no_grad():
        reference = unet(*tensors, return_dict=False)[0].numpy()
    np.savez(out / "torch.npz", out_sample=reference)

    class Plain(torch.nn.Module):  # a tensor out, not diffusers' output dataclass
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.inner(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    torch.onnx.export(
        Plain(unet),
        tensors,
        str(out / "unet.onnx"),
        input_names=list(inputs),
        output_names=["out_sample"],
        opset_version=17,
        dynamo=False,
        external_data=True,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), half="--half" in sys.argv[2:])
