"""Write a full-size Stable Diffusion 1.5 model folder (diffusers layout) with random weights.

Used by benchmarks/load_memory.py to measure loading memory on a model of real size (about 4.3 GB
of float32 weights). No weights can be downloaded here, so the folder is made from diffusers'
SD 1.5 configurations with random initialisation; the numbers do not matter, only the sizes.

Re-run (reference interpreter, outside paddiff's environment):
    python -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.13.0 \
        diffusers==0.42.1 "transformers<6" safetensors
    nice /work/venv-ref/bin/python benchmarks/make_fullsize_sd15.py /work/fullsize-sd15
"""

import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def main(out: Path) -> None:
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    # SD 1.5's UNet differs from diffusers' defaults only in the context width (CLIP ViT-L: 768).
    UNet2DConditionModel(sample_size=64, cross_attention_dim=768).save_pretrained(out / "unet")
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    ).save_pretrained(out / "vae")
    text_config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
    )
    CLIPTextModel(text_config).save_pretrained(out / "text_encoder")
    PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
    ).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "PNDMScheduler"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    total = sum(f.stat().st_size for f in out.rglob("*.safetensors"))
    print(f"wrote {out}: {total / 2**30:.2f} GiB of weights")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/fullsize-sd15"))
