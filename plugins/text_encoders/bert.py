"""BERT-style text encoders: Taiyi-Stable-Diffusion (Chinese RoBERTa-wwm, saved as transformers'
BertModel) and Chinese-CLIP text towers (ChineseCLIPTextModel, the same network).

The Paddle layers below mirror transformers' module names (`embeddings.LayerNorm`,
`encoder.layer.N.attention.self.query`, ...), so a published checkpoint loads with no rename
table, only the Linear transposes. Why not paddlenlp's BertModel: its layers are Paddle's
TransformerEncoderLayer (other names: a per-layer rename table), it builds a padding mask from
`pad_token_id` when none is given (the reference pipeline passes none, so padding must attend),
and paddlenlp has no XLM-R model at all, which shares this encoder (see xlm_roberta.py).

What the pipeline consumes: diffusers' StableDiffusionPipeline calls
`text_encoder(ids, attention_mask=mask)[0]`, the last hidden state, with ids padded to the
tokenizer's model_max_length (512 for Taiyi) and `mask` only when the text encoder's config has
`use_attention_mask: true` (BertConfig has no such field, so Taiyi runs without a mask).
"""

from __future__ import annotations

import functools
import math
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
from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer

# Keys a checkpoint may hold that the pipeline never uses: the [CLS] pooler, the position-id
# buffer older transformers versions saved, and CLIP's logit scale.
IGNORED_KEYS = (r"(^|\.)pooler\.", r"position_ids$", r"logit_scale$")


def _activation(name: str):
    import paddle.nn.functional as F

    table = {
        "gelu": lambda x: F.gelu(x, approximate=False),  # erf form, transformers' "gelu"
        "gelu_new": lambda x: F.gelu(x, approximate=True),  # tanh approximation
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate=True),
        "relu": F.relu,
        "silu": F.silu,
        "swish": F.silu,
    }
    if name not in table:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {', '.join(table)}")
    return table[name]


@functools.cache
def bert_layer_class():
    """The Paddle `Bert` layer class, built on first use so importing this module stays cheap."""
    import paddle
    from paddle import nn

    class Embeddings(nn.Layer):
        def __init__(self, cfg: dict):
            super().__init__()
            size = cfg["hidden_size"]
            self.word_embeddings = nn.Embedding(cfg["vocab_size"], size)
            self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], size)
            self.token_type_embeddings = nn.Embedding(cfg.get("type_vocab_size", 2), size)
            self.LayerNorm = nn.LayerNorm(size, epsilon=cfg.get("layer_norm_eps", 1e-12))

        def forward(self, input_ids, position_ids):
            # Token type 0 everywhere: prompts are single segments.
            x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
            return self.LayerNorm(x + self.token_type_embeddings.weight[0])

    class SelfAttention(nn.Layer):
        def __init__(self, size: int, heads: int):
            super().__init__()
            self.heads = heads
            self.query, self.key, self.value = (nn.Linear(size, size) for _ in range(3))

        def forward(self, x, bias):
            batch, length, size = x.shape
            split = [batch, length, self.heads, size // self.heads]
            q, k, v = (
                f(x).reshape(split).transpose([0, 2, 1, 3])
                for f in (self.query, self.key, self.value)
            )
            scores = paddle.matmul(q, k, transpose_y=True) / math.sqrt(size // self.heads)
            if bias is not None:
                scores = scores + bias
            out = paddle.matmul(nn.functional.softmax(scores, axis=-1), v)
            return out.transpose([0, 2, 1, 3]).reshape([batch, length, size])

    class DenseNorm(nn.Layer):
        """Linear, then LayerNorm of (result + residual): BERT's post-norm sub-layer output."""

        def __init__(self, size_in: int, size: int, eps: float):
            super().__init__()
            self.dense = nn.Linear(size_in, size)
            self.LayerNorm = nn.LayerNorm(size, epsilon=eps)

        def forward(self, x, residual):
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Layer):
        def __init__(self, size: int, heads: int, eps: float):
            super().__init__()
            self.self = SelfAttention(size, heads)
            self.output = DenseNorm(size, size, eps)

        def forward(self, x, bias):
            return self.output(self.self(x, bias), x)

    class Intermediate(nn.Layer):
        def __init__(self, size: int, inner: int, act):
            super().__init__()
            self.dense = nn.Linear(size, inner)
            self.act = act

        def forward(self, x):
            return self.act(self.dense(x))

    class Layer(nn.Layer):
        def __init__(self, cfg: dict):
            super().__init__()
            size, inner, eps = (
                cfg["hidden_size"],
                cfg["intermediate_size"],
                cfg.get("layer_norm_eps", 1e-12),
            )
            self.attention = Attention(size, cfg["num_attention_heads"], eps)
            self.intermediate = Intermediate(
                size, inner, _activation(cfg.get("hidden_act", "gelu"))
            )
            self.output = DenseNorm(inner, size, eps)

        def forward(self, x, bias):
            x = self.attention(x, bias)
            return self.output(self.intermediate(x), x)

    class Encoder(nn.Layer):
        def __init__(self, cfg: dict):
            super().__init__()
            self.layer = nn.LayerList([Layer(cfg) for _ in range(cfg["num_hidden_layers"])])

    class Bert(nn.Layer):
        """Embeddings + post-norm transformer layers; returns every hidden state."""

        def __init__(self, cfg: dict):
            super().__init__()
            self.embeddings = Embeddings(cfg)
            self.encoder = Encoder(cfg)

        def forward(self, input_ids, position_ids, attention_bias=None):
            states = [self.embeddings(input_ids, position_ids)]
            for layer in self.encoder.layer:
                states.append(layer(states[-1], attention_bias))
            return states

    return Bert


def check_config(config: dict, source: Path) -> None:
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"{source}: position_embedding_type {kind!r} is not supported (only 'absolute')"
        )
    missing = [
        k
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
        + ("intermediate_size", "max_position_embeddings")
        if k not in config
    ]
    if missing:
        raise ValueError(f"{source}: config lacks {', '.join(missing)}")


def attention_bias(mask: np.ndarray):
    """Additive attention bias (batch, 1, 1, length): 0 where attended, very negative at padding."""
    import paddle

    bias = (1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min
    return paddle.to_tensor(bias)


class BertTextEncoder(TextEncoder):
    """Taiyi / Chinese-CLIP style text encoder: WordPiece ids -> BERT last hidden state."""

    def __init__(self, config: dict, tokenizer: WordPieceTokenizer, max_length: int):
        self.config = config
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.hidden_size = config["hidden_size"]
        # The reference pipelines pass the padding mask only when the config asks for it.
        self.use_attention_mask = bool(config.get("use_attention_mask", False))
        self.model = bert_layer_class()(config)
        self.model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> BertTextEncoder:
        """Load `text_encoder/` (config.json + weights) and the sibling `tokenizer/` folder.

        Options: tokenizer_path (another tokenizer folder), max_length (tokens per prompt;
        default the tokenizer's model_max_length, as diffusers' pipelines use).
        """
        folder = Path(path)
        config = read_json(folder / "config.json", required=True)
        check_config(config, folder / "config.json")
        tok_folder = tokenizer_folder(folder, options.get("tokenizer_path"))
        tokenizer = WordPieceTokenizer.from_folder(tok_folder)
        max_length = window_length(
            tok_folder, config["max_position_embeddings"], options.get("max_length")
        )
        encoder = cls(config, tokenizer, max_length)
        source, state = load_weights(folder)
        load_strict(encoder.model, state, source, IGNORED_KEYS)
        return encoder

    def tokenize(self, prompts: list[str]) -> np.ndarray:
        return self.tokenizer(list(prompts), self.max_length)[0]

    def _states(self, ids: np.ndarray, mask: np.ndarray | None):
        import paddle

        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        bias = None if mask is None else attention_bias(mask)
        with paddle.no_grad():
            return self.model(paddle.to_tensor(ids), paddle.to_tensor(positions), bias)

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray | None = None) -> list[np.ndarray]:
        """Every hidden state (embeddings output first) for ids, with an optional padding mask."""
        return [state.numpy() for state in self._states(ids, mask)]

    def encode(self, prompts: list[str]) -> np.ndarray:
        ids, mask = self.tokenizer(list(prompts), self.max_length)
        return self._states(ids, mask if self.use_attention_mask else None)[-1].numpy()


def window_length(folder: Path, max_positions: int, requested: int | None = None) -> int:
    """Tokens per prompt: `requested`, else the tokenizer's model_max_length (diffusers pads and
    truncates to it). When that is missing or "unbounded" (transformers writes 1e30), the length
    the position table allows is used: the reference pipeline cannot run unbounded at all.
    """
    config_file = folder / "tokenizer_config.json"
    value = requested or read_json(config_file).get("model_max_length")
    if not isinstance(value, (int, float)) or value >= 1e29:
        return max_positions
    if value > max_positions:
        raise ValueError(
            f"a window of {value} tokens ({config_file} or max_length=) exceeds the "
            f"{max_positions} positions the text encoder has; pass a smaller max_length="
        )
    return int(value)
