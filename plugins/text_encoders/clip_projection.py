"""CLIPTextModelWithProjection: SDXL's second text encoder (OpenCLIP ViT-bigG's text tower).

The same transformer as `CLIPTextModel`, plus `text_projection` (a bias-free Linear): the final
LayerNorm's output at each prompt's end token, projected, is the pooled prompt embedding
(transformers' `text_embeds`) that SDXL's UNet reads next to the per-token hidden states.
Keys are transformers' (`text_model.*`, `text_projection.weight`).
"""

from __future__ import annotations

import numpy as np
import paddle
from paddiff.plugins.nn.component_io import save_component
from paddiff.plugins.nn.state_dict import export_state_dict
from paddiff.plugins.text_encoders.clip import CLIPTextModel, CLIPTextNetwork
from paddle import nn

# transformers' legacy configs say eos_token_id 2, and then pool at the largest id instead
LEGACY_EOS_ID = 2


class CLIPProjectionNetwork(CLIPTextNetwork):
    """ids (B, L) int64 -> (hidden states (B, L, hidden), pooled (B, projection_dim))."""

    def __init__(self, config: dict, clip_skip: int | None = None, hidden_states: str = "last"):
        super().__init__(config, clip_skip, hidden_states)
        self.text_projection = nn.Linear(
            config["hidden_size"], config["projection_dim"], bias_attr=False
        )
        self.eos_id = int(config.get("eos_token_id", LEGACY_EOS_ID))

    def forward(self, input_ids):
        x = self.text_model.embeddings(input_ids)
        n = input_ids.shape[1]
        causal_mask = paddle.triu(paddle.full([n, n], -1e9, dtype=x.dtype), diagonal=1)
        hidden = None
        for i, layer in enumerate(self.text_model.encoder.layers):
            x = layer(x, causal_mask)
            if i + 1 == self.layers_used:
                hidden = x
        last = self.text_model.final_layer_norm(x)
        if self.final_norm:
            hidden = self.text_model.final_layer_norm(hidden)
        # the end token's position: the first eos (or, for legacy configs, the largest id)
        marks = input_ids if self.eos_id == LEGACY_EOS_ID else (input_ids == self.eos_id)
        position = paddle.argmax(marks.astype("int64"), axis=1, keepdim=True)
        pooled = paddle.take_along_axis(last, position.unsqueeze(-1), axis=1).squeeze(1)
        return hidden, self.text_projection(pooled)


class CLIPTextModelWithProjection(CLIPTextModel):
    """Text-encoder plugin for SDXL's `text_encoder_2/` + `tokenizer_2/` folders.

    `encode` gives the hidden states; `encode_with_pooled` the hidden states and the pooled,
    projected embedding from one network call."""

    network_class = CLIPProjectionNetwork

    def __init__(self, config, tokenizer, clip_skip=None, hidden_states="penultimate"):
        config = {"projection_dim": 1280, **config}
        super().__init__(config, tokenizer, clip_skip, hidden_states)
        self.pooled_size = int(self.config["projection_dim"])

    @classmethod
    def from_pretrained(cls, path, tokenizer_path=None, **options):
        from pathlib import Path

        path = Path(path)
        options.setdefault("hidden_states", "penultimate")
        return super().from_pretrained(
            path, tokenizer_path=tokenizer_path or path.parent / "tokenizer_2", **options
        )

    @classmethod
    def from_state_dict(cls, config, state, source="state dict", **options):
        options.setdefault("hidden_states", "penultimate")
        return super().from_state_dict(config, state, source, **options)

    def save_pretrained(self, folder) -> None:
        config = {
            "architectures": ["CLIPTextModelWithProjection"],
            "model_type": "clip_text_model",
            **self.config,
        }
        save_component(folder, config, export_state_dict(self.net), "model.safetensors")

    def encode(self, prompts):
        return self.encode_with_pooled(prompts)[0]

    def encode_with_pooled(self, prompts) -> tuple[np.ndarray, np.ndarray]:
        hidden, pooled = self.runner(np.asarray(self.tokenize(prompts), np.int64))
        return np.asarray(hidden, np.float32), np.asarray(pooled, np.float32)
