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

import numpy as np
from paddiff.plugins.text_encoders.bert import BertModel, bert_layer_class
from paddiff.plugins.text_encoders.xlmr_tokenizer import XLMRobertaTokenizer


def xlmr_positions(ids: np.ndarray, padding_idx: int) -> np.ndarray:
    """fairseq's positions: padding_idx + 1, + 2, ... over real tokens; padding_idx at padding."""
    real = (ids != padding_idx).astype(np.int64)
    return np.cumsum(real, axis=1) * real + padding_idx


@functools.cache
def series_layer_class():
    from paddle import nn

    class RobertaSeries(nn.Layer):
        """`roberta` (XLM-R, BERT's network) + the Linear projection(s) the pipeline consumes."""

        def __init__(self, cfg: dict):
            super().__init__()
            self.roberta = bert_layer_class()(cfg)
            self.transformation = nn.Linear(cfg["hidden_size"], cfg["project_dim"])
            self.has_pre_transformation = bool(cfg.get("has_pre_transformation", False))
            if self.has_pre_transformation:
                self.transformation_pre = nn.Linear(cfg["hidden_size"], cfg["project_dim"])
                self.pre_LN = nn.LayerNorm(cfg["hidden_size"], epsilon=cfg["layer_norm_eps"])

        def project(self, states: list):
            if self.has_pre_transformation:
                return self.transformation_pre(self.pre_LN(states[-2]))
            return self.transformation(states[-1])

        def forward(self, input_ids, position_ids, attention_bias):
            return self.project(self.roberta.all_states(input_ids, position_ids, attention_bias))

    return RobertaSeries


class RobertaSeriesModelWithTransformation(BertModel):
    """AltDiffusion's text encoder: SentencePiece ids -> XLM-R -> projection to project_dim."""

    architecture = "RobertaSeriesModelWithTransformation"
    tokenizer_class = XLMRobertaTokenizer
    # RobertaSeriesConfig's defaults (it extends XLMRobertaConfig) for fields a config.json may
    # leave out; use_attention_mask is true there, so the pipeline passes the padding mask.
    defaults = {
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "type_vocab_size": 2,
        "pad_token_id": 1,
        "project_dim": 512,
        "use_attention_mask": True,
    }

    def __init__(self, config: dict, tokenizer: XLMRobertaTokenizer, max_length: int):
        super().__init__(config, tokenizer, max_length)
        if tokenizer.vocab_size > self.config["vocab_size"]:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} ids but the text encoder only "
                f"{self.config['vocab_size']} embeddings"
            )

    def _build_network(self):
        return series_layer_class()(self.config)

    def _output_width(self) -> int:
        return self.config["project_dim"]

    @classmethod
    def _positions_available(cls, config: dict) -> int:
        # Positions start after padding_idx, so that many fewer tokens fit.
        return config["max_position_embeddings"] - config["pad_token_id"] - 1

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        return xlmr_positions(ids, self.config["pad_token_id"])

    def _encoder(self):
        return self.net.roberta
