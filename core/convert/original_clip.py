"""The text encoder (`cond_stage_model`) of an original Stable Diffusion checkpoint.

- SD 1.x embeds OpenAI's CLIP ViT-L/14 text model through transformers, so its keys are already
  transformers' keys under `cond_stage_model.transformer.` (with or without `text_model.`,
  depending on the transformers version that wrote the checkpoint).
- SD 2.x embeds OpenCLIP ViT-H/14 (`cond_stage_model.model.`): attention stores q, k and v as one
  `in_proj` matrix (split into thirds here), and SD 2 conditions on the penultimate layer (its
  config says `layer: penultimate`), so the last residual block is never used and is dropped;
  diffusers' text encoder has one layer fewer than the checkpoint.
"""

from __future__ import annotations

import re

from paddiff.convert.keymap import Block, KeyMap, rename_state
from paddiff.weights import StateDict, TensorInfo

CLIP_PREFIX = "cond_stage_model.transformer."
OPENCLIP_PREFIX = "cond_stage_model.model."
TEXT_MODEL = "text_model"  # the prefix of every key in diffusers' text_encoder folders

CLIP_PARTS = ("embeddings", "encoder", "final_layer_norm")
OPENCLIP_LAYER = (
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("self_attn.out_proj", "attn.out_proj"),
)
# OpenCLIP tensors with no counterpart in transformers' CLIPTextModel
OPENCLIP_UNUSED = ("text_projection", "logit_scale", "attn_mask")


def clip_keymap(with_text_model: bool) -> KeyMap:
    if with_text_model:
        return KeyMap([Block(TEXT_MODEL, TEXT_MODEL)])
    return KeyMap([Block(f"{TEXT_MODEL}.{part}", part) for part in CLIP_PARTS])


def convert_clip(state: StateDict) -> StateDict:
    with_text_model = f"{CLIP_PREFIX}{TEXT_MODEL}.embeddings.token_embedding.weight" in state
    return rename_state(
        state,
        CLIP_PREFIX,
        clip_keymap(with_text_model),
        "text encoder (CLIP)",
        ignore=lambda key: key.endswith("position_ids"),  # a buffer, not a weight
    )


def clip_config(state: StateDict) -> dict:
    shapes = {k[len(CLIP_PREFIX) :]: state.shape(k) for k in state if k.startswith(CLIP_PREFIX)}
    if f"{TEXT_MODEL}.embeddings.token_embedding.weight" in shapes:
        shapes = {k[len(TEXT_MODEL) + 1 :]: v for k, v in shapes.items()}
    vocab, hidden = shapes["embeddings.token_embedding.weight"]
    return _text_config(
        hidden=hidden,
        vocab=vocab,
        positions=shapes["embeddings.position_embedding.weight"][0],
        layers=_count(shapes, r"encoder\.layers\.(\d+)\."),
        intermediate=shapes["encoder.layers.0.mlp.fc1.weight"][0],
        activation="quick_gelu",  # OpenAI CLIP
    )


def openclip_keymap(layers: int) -> KeyMap:
    blocks = [
        Block(f"{TEXT_MODEL}.embeddings.token_embedding", "token_embedding"),
        Block(f"{TEXT_MODEL}.embeddings.position_embedding.weight", "positional_embedding"),
        Block(f"{TEXT_MODEL}.final_layer_norm", "ln_final"),
    ]
    for i in range(layers):
        blocks.append(
            Block(f"{TEXT_MODEL}.encoder.layers.{i}", f"transformer.resblocks.{i}", OPENCLIP_LAYER)
        )
    return KeyMap(blocks)


def openclip_layers(state: StateDict) -> int:
    """Layers diffusers keeps: all residual blocks but the last (SD 2 uses the penultimate)."""
    return _count(state, re.escape(OPENCLIP_PREFIX) + r"transformer\.resblocks\.(\d+)\.") - 1


def convert_openclip(state: StateDict) -> StateDict:
    layers = openclip_layers(state)
    dropped = f"transformer.resblocks.{layers}."

    def ignore(key: str) -> bool:
        return key.startswith(dropped) or key in OPENCLIP_UNUSED or "attn.in_proj_" in key

    out = rename_state(
        state, OPENCLIP_PREFIX, openclip_keymap(layers), "text encoder (OpenCLIP)", ignore
    )
    for i in range(layers):
        for kind in ("weight", "bias"):
            key = f"{OPENCLIP_PREFIX}transformer.resblocks.{i}.attn.in_proj_{kind}"
            info = state.info(key)
            third = info.shape[0] // 3
            for n, name in enumerate("qkv"):  # in_proj rows are [q; k; v]
                read = (lambda r, a, b: lambda: r()[a:b].copy())(
                    state.reader(key), n * third, (n + 1) * third
                )
                new = f"{TEXT_MODEL}.encoder.layers.{i}.self_attn.{name}_proj.{kind}"
                out.add(new, TensorInfo((third,) + info.shape[1:], info.dtype, info.file), read)
    return out


def openclip_config(state: StateDict) -> dict:
    vocab, hidden = state.shape(f"{OPENCLIP_PREFIX}token_embedding.weight")
    return _text_config(
        hidden=hidden,
        vocab=vocab,
        positions=state.shape(f"{OPENCLIP_PREFIX}positional_embedding")[0],
        layers=openclip_layers(state),
        intermediate=state.shape(f"{OPENCLIP_PREFIX}transformer.resblocks.0.mlp.c_fc.weight")[0],
        activation="gelu",  # OpenCLIP uses exact GELU
    )


def _text_config(hidden, vocab, positions, layers, intermediate, activation) -> dict:
    return {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": max(hidden // 64, 1),  # both CLIPs use 64-channel heads
        "max_position_embeddings": positions,
        "vocab_size": vocab,
        "hidden_act": activation,
        "layer_norm_eps": 1e-5,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0
