"""BERT-style text encoders: Taiyi-Stable-Diffusion (Chinese RoBERTa-wwm, saved as transformers'
BertModel) and Chinese-CLIP text towers (ChineseCLIPTextModel, the same network).

The Paddle layers below mirror transformers' module names (`embeddings.LayerNorm`,
`encoder.layer.N.attention.self.query`, ...), so a published checkpoint loads with no rename
table, only the Linear transposes. Why not paddlenlp's BertModel: its layers are Paddle's
TransformerEncoderLayer (other names: a per-layer rename table), it builds a padding mask from
`pad_token_id` when none is given (the reference pipeline passes none, so padding must attend:
1.9 off on the test model; with a rename table and an explicit all-ones mask it matched to 2e-6),
and paddlenlp 2.8.1 has no XLM-R model at all, which shares this encoder (see xlm_roberta.py).

What the pipeline consumes: diffusers' StableDiffusionPipeline calls
`text_encoder(ids, attention_mask=mask)[0]`, the last hidden state, with ids padded to the
tokenizer's model_max_length (512 for Taiyi) and `mask` only when the text encoder's config has
`use_attention_mask: true` (BertConfig has no such field, so Taiyi runs without a mask).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from paddiff.interfaces import TextEncoder
from paddiff.plugins.nn.component_io import load_component_weights, save_component
from paddiff.plugins.nn.state_dict import export_state_dict, load_state_dict_into
from paddiff.plugins.text_encoders._files import drop_keys, read_json, tokenizer_folder
from paddiff.plugins.text_encoders.added_tokens import AddedTokens
from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer

# Keys a checkpoint may hold that the pipeline never uses: the [CLS] pooler, the position-id
# buffer older transformers versions saved, and CLIP's logit scale.
IGNORED_KEYS = (r"(^|\.)pooler\.", r"position_ids$", r"logit_scale$")
REQUIRED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


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
        """Embeddings + post-norm transformer layers.

        Inputs are all arrays, so that the network exports as it is: ids and positions (batch,
        length) int64, the additive attention bias (batch, 1, 1, length), zeros for no mask.
        """

        def __init__(self, cfg: dict):
            super().__init__()
            self.embeddings = Embeddings(cfg)
            self.encoder = Encoder(cfg)

        def all_states(self, input_ids, position_ids, attention_bias):
            """Every hidden state: the embeddings' output, then each layer's."""
            states = [self.embeddings(input_ids, position_ids)]
            for layer in self.encoder.layer:
                states.append(layer(states[-1], attention_bias))
            return states

        def forward(self, input_ids, position_ids, attention_bias):
            """The last hidden state (what Taiyi's pipeline consumes)."""
            return self.all_states(input_ids, position_ids, attention_bias)[-1]

    return Bert


def check_config(config: dict, source: str) -> None:
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"{source}: position_embedding_type {kind!r} is not supported (only 'absolute')"
        )
    missing = [key for key in REQUIRED_CONFIG if key not in config]
    if missing:
        raise ValueError(f"{source}: config lacks {', '.join(missing)}")


def attention_bias(mask: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
    """Additive attention bias (batch, 1, 1, length): 0 where attended, the most negative float
    at padding; all zeros without a mask (adding 0 changes nothing)."""
    if mask is None:
        return np.zeros((ids.shape[0], 1, 1, ids.shape[1]), dtype=np.float32)
    return (1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min


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


class BertModel(AddedTokens, TextEncoder):
    """Taiyi-style text encoder: WordPiece ids -> BERT's last hidden state.

    Named after the class Taiyi's model_index.json gives (transformers' BertModel), so that
    paddiff's loader finds it; `self.net` holds transformers' state-dict keys.
    """

    architecture = "BertModel"
    tokenizer_class = WordPieceTokenizer
    # BertConfig's defaults for the fields a config.json may leave out. BertConfig has no
    # use_attention_mask, so the reference pipeline passes no mask unless a config adds one.
    defaults = {
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "type_vocab_size": 2,
        "use_attention_mask": False,
    }

    def __init__(self, config: dict, tokenizer, max_length: int):
        self.config = {**self.defaults, **config}
        check_config(self.config, f"{self.architecture} config")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.tokenizer.model_max_length = max_length  # what save_pretrained records
        self.use_attention_mask = bool(self.config["use_attention_mask"])
        self.hidden_size = int(self._output_width())
        self.net = self._build_network()
        self.net.eval()
        # `net.forward` gives the conditioning; paddiff.execution chooses how it runs. Batch
        # and prompt length stay dynamic in an exported program; a zero bias (no mask) lets one
        # program serve the masked and the unmasked case.
        from paddiff.execution import InputSpec, Network

        inputs = [
            InputSpec("input_ids", (None, None), "int64"),
            InputSpec("position_ids", (None, None), "int64"),
            InputSpec("attention_bias", (None, 1, 1, None)),
        ]
        self.runner = Network("text_encoder", self.net, inputs, self.config)

    # -- what subclasses change ----------------------------------------------------------------

    def _build_network(self):
        return bert_layer_class()(self.config)

    def _output_width(self) -> int:
        return self.config["hidden_size"]

    @classmethod
    def _positions_available(cls, config: dict) -> int:
        return config["max_position_embeddings"]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)

    def _encoder(self):
        """The BERT / XLM-R part of `self.net`."""
        return self.net

    def token_embedding(self):
        return self._encoder().embeddings.word_embeddings

    def _replace_token_embedding(self, layer) -> None:
        self._encoder().embeddings.word_embeddings = layer

    # -- loading and saving --------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path, tokenizer_path=None, max_length=None, variant=None, **options):
        """Load `path` (a `text_encoder/` folder: config.json + weights in any format
        paddiff.weights reads) and the tokenizer, by default the sibling `tokenizer/` folder.

        max_length: tokens per prompt; default the tokenizer's model_max_length, as diffusers'
        pipelines use. variant: weights variant ("fp16" reads `model.fp16.safetensors`).
        """
        path = Path(path)
        config = read_json(path / "config.json", required=True)
        state, source = load_component_weights(path, variant)
        tokenizer_path = tokenizer_folder(path, tokenizer_path)
        return cls.from_state_dict(config, state, source, tokenizer_path, max_length)

    @classmethod
    def from_state_dict(
        cls, config, state, source="state dict", tokenizer_path=None, max_length=None, **options
    ):
        """Build from a config dict and a state dict with transformers' keys; the tokenizer is
        read from `tokenizer_path`."""
        import paddle

        if tokenizer_path is None or not Path(tokenizer_path).is_dir():
            raise FileNotFoundError(
                f"{source}: {cls.architecture} needs its tokenizer folder (tokenizer_path=), "
                f"got {tokenizer_path}"
            )
        tokenizer = cls.tokenizer_class.from_folder(tokenizer_path)
        full = {**cls.defaults, **config}
        check_config(full, source)
        window = window_length(Path(tokenizer_path), cls._positions_available(full), max_length)
        with paddle.LazyGuard():  # no random init: every parameter is set from the file
            model = cls(config, tokenizer, window)
        load_state_dict_into(model.net, drop_keys(state, IGNORED_KEYS), source)
        return model

    def save_pretrained(self, folder) -> None:
        """config.json + model.safetensors with transformers' keys; the tokenizer saves itself
        (`self.tokenizer.save_pretrained(tokenizer_folder)`)."""
        config = {**self.config, "architectures": [self.architecture]}
        save_component(folder, config, export_state_dict(self.net), "model.safetensors")

    # -- encoding ------------------------------------------------------------------------------

    def tokenize(self, prompts: list[str]) -> np.ndarray:
        return self.tokenizer(list(prompts), self.max_length)[0]

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` without the start and end tokens (the pipeline warns when a prompt
        has more than fit in the window)."""
        return len(self.tokenizer.text_ids(text))

    def networks(self) -> list:
        """What runs this component (paddiff.execution decides how)."""
        return [self.runner]

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray | None = None) -> list[np.ndarray]:
        """Every hidden state of the BERT / XLM-R encoder (embeddings output first) for ids,
        with an optional padding mask (dynamic graph)."""
        import paddle

        self.runner.restore_weights()  # a static runner may have handed them to its program
        inputs = (ids, self._positions(ids), attention_bias(mask, ids))
        with paddle.no_grad():
            states = self._encoder().all_states(*(paddle.to_tensor(a) for a in inputs))
        return [state.numpy() for state in states]

    def encode(self, prompts: list[str]) -> np.ndarray:
        ids, mask = self.tokenizer(list(prompts), self.max_length)
        bias = attention_bias(mask if self.use_attention_mask else None, ids)
        return self.runner(ids, np.ascontiguousarray(self._positions(ids)), bias)


class ChineseCLIPTextModel(BertModel):
    """Chinese-CLIP's text tower: the same network and keys as BertModel."""

    architecture = "ChineseCLIPTextModel"
