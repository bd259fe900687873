"""Writes an SDXL-size base model with random weights as a diffusers folder, fp16 safetensors.

    .venv/bin/python benchmarks/make_fullsize_sdxl.py OUTDIR

SDXL 1.0 base's configs (UNet 2.57 G parameters, CLIP ViT-L and OpenCLIP ViT-bigG text
encoders, the SDXL VAE), CLIP's full 49,408-token vocabulary (the one paddiff ships), and
random weights written one tensor at a time in float16, as the fp16 files people download
are: about 6.9 GB on disk; the script holds one pool of 67 M draws and one tensor at a time (the
networks are built under paddle.LazyGuard, which allocates nothing). Used by the slow test
tests/sdxl/test_fullsize.py (PADDIFF_SDXL_FULLSIZE_DIR=OUTDIR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
VAE = {
    "_class_name": "AutoencoderKL",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
TEXT_1 = {  # CLIP ViT-L/14's text tower
    "architectures": ["CLIPTextModel"],
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
TEXT_2 = {  # OpenCLIP ViT-bigG/14's text tower
    **TEXT_1,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}
SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}
INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


POOL_SIZE = 1 << 26  # more values than the largest tensor holds (the 63 M token embedding)


def random_weights(layer, seed: int):
    """A torch-layout `paddiff.weights.StateDict` whose tensors are made when read: N(0,
    1/fan_in) weights (activations keep their scale through the network), norm scales near 1,
    small biases. Each tensor is a slice of one pool of normal draws at its own offset, which
    is plenty for a memory and speed test and makes writing 2.6 G values take seconds."""
    from paddiff.plugins.nn.state_dict import linear_weight_keys
    from paddiff.weights import StateDict, TensorInfo

    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(POOL_SIZE, dtype=np.float32)
    transposed = linear_weight_keys(layer)
    state = StateDict()
    for key, param in layer.state_dict().items():
        shape = tuple(param.shape[::-1] if key in transposed else param.shape)
        size = int(np.prod(shape))
        offset = int(rng.integers(0, POOL_SIZE - size + 1))

        def read(shape=shape, size=size, offset=offset, key=key):
            values = pool[offset : offset + size].reshape(shape)
            if len(shape) == 1:  # norm scale / bias
                base = 1.0 if key.endswith("weight") else 0.0
                return (base + 0.02 * values).astype(np.float16)
            return (values / np.sqrt(np.prod(shape[1:]))).astype(np.float16)

        state.add(key, TensorInfo(shape, "float16", None), read)
    return state


def write_component(folder: Path, config: dict, layer, weights_name: str, seed: int) -> int:
    from paddiff.weights import save_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    weights = random_weights(layer, seed)
    save_state_dict(weights, folder / weights_name)
    return sum(int(np.prod(weights.shape(key))) for key in weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    out = parser.parse_args().outdir
    import paddle
    from paddiff.plugins.denoisers.unet import DEFAULTS as UNET_DEFAULTS
    from paddiff.plugins.denoisers.unet import UNetNetwork
    from paddiff.plugins.text_encoders.clip import DEFAULTS as CLIP_DEFAULTS
    from paddiff.plugins.text_encoders.clip import CLIPTextNetwork
    from paddiff.plugins.text_encoders.clip_projection import CLIPProjectionNetwork
    from paddiff.plugins.text_encoders.clip_tokenizer import CLIPTokenizer
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    out.mkdir(parents=True, exist_ok=True)
    with paddle.LazyGuard():  # shapes only; nothing is allocated
        unet = UNetNetwork({**UNET_DEFAULTS, **UNET})
        text_1 = CLIPTextNetwork({**CLIP_DEFAULTS, **TEXT_1})
        text_2 = CLIPProjectionNetwork({**CLIP_DEFAULTS, **TEXT_2})
        vae = AutoencoderKL(VAE).net
    counts = {
        "unet": write_component(out / "unet", UNET, unet, "diffusion_pytorch_model.safetensors", 1),
        "text_encoder": write_component(
            out / "text_encoder", TEXT_1, text_1, "model.safetensors", 2
        ),
        "text_encoder_2": write_component(
            out / "text_encoder_2", TEXT_2, text_2, "model.safetensors", 3
        ),
        "vae": write_component(out / "vae", VAE, vae, "diffusion_pytorch_model.safetensors", 4),
    }
    CLIPTokenizer.shipped(pad_token="<|endoftext|>").save_pretrained(out / "tokenizer")
    CLIPTokenizer.shipped(pad_token="!").save_pretrained(out / "tokenizer_2")
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=2))
    (out / "model_index.json").write_text(json.dumps(INDEX, indent=2))
    for name, count in counts.items():
        print(f"{name}: {count / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
