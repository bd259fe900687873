"""An SDXL diffusers folder written back as Stability's single-file (`sgm`) layout: the
inverse of paddiff.convert.original_sdxl, built from its own tables so the tests check the
loader against a file laid out as A1111 / ComfyUI files are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from paddiff.convert import original_clip, original_unet, original_vae
from paddiff.convert.keymap import KeyMap
from paddiff.convert.original_sdxl import ADD_EMBEDDING, EMBEDDERS
from paddiff.weights import load_component_weights


def to_sgm(model: Path) -> dict[str, np.ndarray]:
    out = {}
    unet = json.loads((model / "unet" / "config.json").read_text())
    attention = [t.startswith("CrossAttn") for t in unet["down_block_types"]]
    keymap = original_unet.unet_keymap(
        len(unet["block_out_channels"]), unet["layers_per_block"], attention
    )
    keymap = KeyMap(keymap.blocks + ADD_EMBEDDING)
    for key, value in load_component_weights(model / "unet").items():
        out[original_unet.PREFIX + keymap.to_original(key)] = value
    vae = json.loads((model / "vae" / "config.json").read_text())
    keymap = original_vae.vae_keymap(len(vae["block_out_channels"]), vae["layers_per_block"])
    for key, value in load_component_weights(model / "vae").items():
        if original_vae.vae_reshape(key, value.shape + (1, 1)):
            value = value[:, :, None, None]
        out[original_vae.PREFIX + keymap.to_original(key)] = value
    index = 0
    if (model / "text_encoder").is_dir():  # the base: CLIP ViT-L is embedder 0
        text = load_component_weights(model / "text_encoder")
        for key, value in text.items():
            key = key if key.startswith("text_model.") else "text_model." + key
            out[f"{EMBEDDERS}0.transformer.{key}"] = value
        index = 1
    out.update(_openclip(model / "text_encoder_2", f"{EMBEDDERS}{index}.model."))
    return out


def _openclip(folder: Path, prefix: str) -> dict[str, np.ndarray]:
    text = dict(load_component_weights(folder))
    text = {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
            for k, v in text.items()}  # fmt: skip
    layers = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    keymap = original_clip.openclip_keymap(layers)
    out = {}
    for i in range(layers):
        for kind in ("weight", "bias"):
            parts = [
                text.pop(f"text_model.encoder.layers.{i}.self_attn.{n}_proj.{kind}") for n in "qkv"
            ]
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = np.concatenate(parts)
    out["text_projection"] = np.ascontiguousarray(text.pop("text_projection.weight").T)
    out.update({keymap.to_original(k): v for k, v in text.items()})
    out["logit_scale"] = np.asarray(4.6, np.float32)  # in OpenCLIP files; not a text weight
    return {prefix + k: v for k, v in out.items()}
