"""Original single-file SDXL checkpoints (Stability's `sgm` layout, as A1111 / ComfyUI load
them) as components.

    model.diffusion_model.*              the UNet; `label_emb.0.{0,2}` is diffusers'
                                         add_embedding (the text-time MLP)
    first_stage_model.*                  the VAE
    conditioner.embedders.N.transformer.*  CLIP ViT-L (transformers' keys; base only)
    conditioner.embedders.N.model.*      OpenCLIP ViT-bigG: fused in_proj q/k/v (split here),
                                         all layers kept (SDXL reads the penultimate one
                                         itself), `text_projection` a (hidden, projection)
                                         matrix applied as x @ P (diffusers' Linear weight P.T)

The base has embedders 0 (CLIP) and 1 (OpenCLIP), the refiner only 0 (OpenCLIP). What the
shapes cannot tell follows SDXL 1.0: 64-channel attention heads, 256-wide micro-conditioning
embeddings, the SDXL VAE scaling factor and scheduler; `overrides` (or a config folder) change it.
"""

from __future__ import annotations

import re

from paddiff.convert import original_clip, original_unet, original_vae
from paddiff.convert.keymap import Block, KeyMap, rename_state
from paddiff.convert.original_sd import Converted, _shapes
from paddiff.weights import StateDict, TensorInfo

EMBEDDERS = "conditioner.embedders."
TIME_EMBED_DIM = 256  # SDXL's addition_time_embed_dim; the weights only give the total width
SCALING_FACTOR = 0.13025
ADD_EMBEDDING = [
    Block("add_embedding.linear_1", "label_emb.0.0"),
    Block("add_embedding.linear_2", "label_emb.0.2"),
]
SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}


def is_sdxl_checkpoint(state: StateDict) -> bool:
    return any(k.startswith(EMBEDDERS) for k in state) or (
        f"{original_unet.PREFIX}label_emb.0.0.weight" in state
    )


def convert_sdxl_checkpoint(state: StateDict, overrides: dict | None = None) -> dict:
    """Components of an SDXL single file: "denoiser", "vae", "text_encoder" (CLIP, base only),
    "text_encoder_2" (OpenCLIP) and "scheduler"; `overrides` maps a component name to config
    entries replacing the inferred ones."""
    overrides = overrides or {}
    names = {"denoiser", "vae", "text_encoder", "text_encoder_2", "scheduler"}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"config overrides for unknown components: {', '.join(sorted(unknown))}")
    parts = {"denoiser": _unet(state), "scheduler": Converted(dict(SCHEDULER), None)}
    if any(k.startswith(original_vae.PREFIX) for k in state):
        shapes = _shapes(state, original_vae.PREFIX)
        keymap = original_vae.vae_keymap(*original_vae.vae_structure(shapes))
        converted = rename_state(
            state, original_vae.PREFIX, keymap, "VAE", reshape=original_vae.vae_reshape
        )
        config = {**original_vae.vae_config(shapes), "scaling_factor": SCALING_FACTOR}
        parts["vae"] = Converted(config, converted)
    for index in sorted({int(m.group(1)) for k in state if (m := _EMBEDDER.match(k))}):
        prefix = f"{EMBEDDERS}{index}."
        if f"{prefix}transformer.text_model.embeddings.token_embedding.weight" in state:
            parts["text_encoder"] = _clip(state, prefix + "transformer.")
        elif f"{prefix}model.token_embedding.weight" in state:
            parts["text_encoder_2"] = _openclip(state, prefix + "model.")
    if "text_encoder_2" not in parts:
        raise ValueError(
            f"{state.files[0] if state.files else 'state dict'}: an SDXL checkpoint without "
            f"its OpenCLIP text encoder ({EMBEDDERS}N.model.*)"
        )
    for name, extra in overrides.items():
        if name in parts:
            parts[name].config.update(extra)
    return parts


_EMBEDDER = re.compile(re.escape(EMBEDDERS) + r"(\d+)\.")


def _unet(state: StateDict) -> Converted:
    shapes = _shapes(state, original_unet.PREFIX)
    levels, layers, attention = original_unet.unet_structure(shapes)
    keymap = original_unet.unet_keymap(levels, layers, attention)
    keymap = KeyMap(keymap.blocks + ADD_EMBEDDING)
    converted = rename_state(state, original_unet.PREFIX, keymap, "UNet")
    config = original_unet.unet_config(shapes)
    channels = config["block_out_channels"]
    depth = [
        _count(shapes, rf"input_blocks\.{1 + level * (layers + 1)}\.1\.transformer_blocks\.(\d+)\.")
        for level in range(levels)
    ]
    # diffusers' mid block uses the deepest level's depth; keep the levels without attention
    # at 1 (they have no transformer), as SDXL's configs do
    depth = [d or 1 for d in depth]
    total = shapes["label_emb.0.0.weight"][1]
    config.update(
        sample_size=128,
        attention_head_dim=[max(c // 64, 1) for c in channels],
        transformer_layers_per_block=depth,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=total,
    )
    return Converted(config, converted)


def _clip(state: StateDict, prefix: str) -> Converted:
    """CLIP ViT-L under transformers' keys: the SD 1.x conversion with another prefix."""
    moved = StateDict(state.layout, state.dtype.name if state.dtype is not None else None)
    for key in state:
        if key.startswith(prefix):
            new = original_clip.CLIP_PREFIX + key[len(prefix) :]
            moved.add(new, state.info(key), state.reader(key))
    return Converted(
        original_clip.clip_config(moved), original_clip.convert_clip(moved), "<|endoftext|>"
    )


def _openclip(state: StateDict, prefix: str) -> Converted:
    """OpenCLIP bigG with every layer and its projection (SD 2.x's conversion drops both)."""
    moved = StateDict(state.layout, state.dtype.name if state.dtype is not None else None)
    for key in state:
        if key.startswith(prefix):
            moved.add(original_clip.OPENCLIP_PREFIX + key[len(prefix) :], *_entry(state, key))
    layers = _count(
        moved, re.escape(original_clip.OPENCLIP_PREFIX) + r"transformer\.resblocks\.(\d+)\."
    )
    # one dummy block past the last makes the SD 2.x conversion keep every real one
    last = f"{original_clip.OPENCLIP_PREFIX}transformer.resblocks.{layers - 1}."
    for key in [k for k in moved if k.startswith(last)]:
        moved.add(
            key.replace(last, last[: -len(f"{layers - 1}.")] + f"{layers}."), *_entry(moved, key)
        )
    converted = original_clip.convert_openclip(moved)
    config = original_clip.openclip_config(moved)
    projection = f"{original_clip.OPENCLIP_PREFIX}text_projection"
    info = moved.info(projection)
    read = (lambda r: lambda: r().T.copy())(moved.reader(projection))
    converted.add(
        "text_projection.weight", TensorInfo(info.shape[::-1], info.dtype, info.file), read
    )
    config.update(architectures=["CLIPTextModelWithProjection"], projection_dim=info.shape[1])
    return Converted(config, converted, "!")


def _entry(state: StateDict, key: str):
    return state.info(key), state.reader(key)


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0
