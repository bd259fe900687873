"""Older key names that some diffusers-layout folders still use, renamed to today's.

- paddlenlp's CLIPTextModel (the text encoder of ppdiffusers folders) names its modules after
  Paddle's TransformerEncoder: `text_model.transformer.layers.<i>.linear1`, `norm1`, `ln_final`,
  `positional_embedding`, where transformers has `encoder.layers.<i>.mlp.fc1`, `layer_norm1`,
  `final_layer_norm`, `embeddings.position_embedding`.
- diffusers before 0.14 (and ppdiffusers of that time) named the VAE's mid-block attention
  `query`, `key`, `value`, `proj_attn`; now `to_q`, `to_k`, `to_v`, `to_out.0`.

Keys already in today's names pass through unchanged; nothing is read.
"""

from __future__ import annotations

import re

from paddiff.convert.keymap import Block, KeyMap
from paddiff.weights import StateDict

PADDLENLP_LAYER = (
    ("mlp.fc1", "linear1"),
    ("mlp.fc2", "linear2"),
    ("layer_norm1", "norm1"),
    ("layer_norm2", "norm2"),
)
OLD_VAE_ATTENTION = (
    ("to_q", "query"),
    ("to_k", "key"),
    ("to_v", "value"),
    ("to_out.0", "proj_attn"),
)


def paddlenlp_clip_keymap(layers: int) -> KeyMap:
    blocks = [
        Block("text_model.embeddings.token_embedding", "text_model.token_embedding"),
        Block("text_model.embeddings.position_embedding", "text_model.positional_embedding"),
        Block("text_model.final_layer_norm", "text_model.ln_final"),
    ]
    for i in range(layers):
        blocks.append(
            Block(
                f"text_model.encoder.layers.{i}",
                f"text_model.transformer.layers.{i}",
                PADDLENLP_LAYER,
            )
        )
    return KeyMap(blocks)


OLD_VAE_KEYMAP = KeyMap(
    [
        Block(f"{side}.mid_block.attentions.0", f"{side}.mid_block.attentions.0", OLD_VAE_ATTENTION)
        for side in ("encoder", "decoder")
    ]  # fmt: skip
)


def modernize_keys(state: StateDict) -> StateDict:
    """`state` with paddlenlp CLIP names and pre-0.14 VAE attention names renamed."""
    layers = {
        int(m.group(1))
        for k in state
        if (m := re.match(r"text_model\.transformer\.layers\.(\d+)\.", k))
    }
    if layers:
        keymap = paddlenlp_clip_keymap(max(layers) + 1)
        return state.renamed(lambda key: keymap.to_diffusers(key) or key)
    if any(".mid_block.attentions.0.query." in k for k in state):
        return state.renamed(lambda key: OLD_VAE_KEYMAP.to_diffusers(key) or key)
    return state
