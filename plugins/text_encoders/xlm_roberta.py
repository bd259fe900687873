"""AltDiffusion's text encoder: XLM-RoBERTa plus a linear `transformation` to the UNet's width.

diffusers' `RobertaSeriesModelWithTransformation` (pipelines/deprecated/alt_diffusion) is an
XLMRobertaModel under the key prefix `roberta.` and a Linear `transformation`. The AltDiffusion
pipeline consumes `text_encoder(ids, attention_mask=mask)[0]`, which is the projection:

- `transformation(last_hidden_state)`, or, when the config sets `has_pre_transformation`
- `transformation_pre(pre_LN(hidden_states[-2]))`: the second-to-last layer's output, layer-normed
  by `pre_LN`, through a second Linear (`transformation` is still stored, but unused).

The mask is passed because RobertaSeriesConfig's `use_attention_mask` defaults to true. XLM-R is
BERT's network with one difference, its position ids: fairseq numbers real tokens from
padding_idx + 1 and gives every padding token the position padding_idx (1), so positions depend
on where the padding is. The encoder layers are bert.py's, under the same key names.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from paddiff.interfaces import TextEncoder
from paddiff.plugins.text_encoders._files import (
    load_strict,
    load_weights,
    read_json,
    tokenizer_folder,
)
from paddiff.plugins.text_encoders.bert import (
    IGNORED_KEYS,
    attention_bias,
    bert_layer_class,
    check_config,
    window_length,
)
from paddiff.plugins.text_encoders.xlmr_tokenizer import XLMRobertaTokenizer

# RobertaSeriesConfig's defaults, for fields a published config.json may leave out.
DEFAULTS = {
    "pad_token_id": 1,
    "project_dim": 512,
    "use_attention_mask": True,
    "layer_norm_eps": 1e-12,
}


def xlmr_positions(ids: np.ndarray, padding_idx: int) -> np.ndarray:
    """fairseq's positions: padding_idx + 1, + 2, ... over real tokens; padding_idx at padding."""
    real = (ids != padding_idx).astype(np.int64)
    return np.cumsum(real, axis=1) * real + padding_idx


@functools.cache
def series_layer_class():
    from paddle import nn

    class RobertaSeries(nn.Layer):
        def __init__(self, cfg: dict):
            super().__init__()
            self.roberta = bert_layer_class()(cfg)
            self.transformation = nn.Linear(cfg["hidden_size"], cfg["project_dim"])
            self.has_pre_transformation = bool(cfg.get("has_pre_transformation", False))
            if self.has_pre_transformation:
                self.transformation_pre = nn.Linear(cfg["hidden_size"], cfg["project_dim"])
                self.pre_LN = nn.LayerNorm(cfg["hidden_size"], epsilon=cfg["layer_norm_eps"])

        def forward(self, input_ids, position_ids, attention_bias=None):
            states = self.roberta(input_ids, position_ids, attention_bias)
            if self.has_pre_transformation:
                return self.transformation_pre(self.pre_LN(states[-2]))
            return self.transformation(states[-1])

    return RobertaSeries


class XLMRobertaTextEncoder(TextEncoder):
    """AltDiffusion-style text encoder: SentencePiece ids -> XLM-R -> projection."""

    def __init__(self, config: dict, tokenizer: XLMRobertaTokenizer, max_length: int):
        self.config = {**DEFAULTS, **config}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.hidden_size = self.config["project_dim"]
        self.use_attention_mask = bool(self.config["use_attention_mask"])
        self.padding_idx = self.config["pad_token_id"]
        self.model = series_layer_class()(self.config)
        self.model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> XLMRobertaTextEncoder:
        """Load `text_encoder/` (config.json + weights) and the sibling `tokenizer/` folder.

        Options: tokenizer_path (another tokenizer folder), max_length (tokens per prompt;
        default the tokenizer's model_max_length, 77 for AltDiffusion).
        """
        folder = Path(path)
        config = {**DEFAULTS, **read_json(folder / "config.json", required=True)}
        check_config(config, folder / "config.json")
        tok_folder = tokenizer_folder(folder, options.get("tokenizer_path"))
        tokenizer = XLMRobertaTokenizer.from_folder(tok_folder)
        if tokenizer.vocab_size > config["vocab_size"]:
            raise ValueError(
                f"{tok_folder}: the tokenizer has {tokenizer.vocab_size} ids but the text encoder "
                f"only {config['vocab_size']} embeddings"
            )
        # Positions start after padding_idx, so that many fewer tokens fit.
        usable = config["max_position_embeddings"] - config["pad_token_id"] - 1
        max_length = window_length(tok_folder, usable, options.get("max_length"))
        encoder = cls(config, tokenizer, max_length)
        source, state = load_weights(folder)
        load_strict(encoder.model, state, source, IGNORED_KEYS)
        return encoder

    def tokenize(self, prompts: list[str]) -> np.ndarray:
        return self.tokenizer(list(prompts), self.max_length)[0]

    def project(self, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The projected states the pipeline consumes, for ids and an optional padding mask."""
        import paddle

        positions = xlmr_positions(ids, self.padding_idx)
        bias = None if mask is None else attention_bias(mask)
        with paddle.no_grad():
            return self.model(paddle.to_tensor(ids), paddle.to_tensor(positions), bias).numpy()

    def encode(self, prompts: list[str]) -> np.ndarray:
        ids, mask = self.tokenizer(list(prompts), self.max_length)
        return self.project(ids, mask if self.use_attention_mask else None)
