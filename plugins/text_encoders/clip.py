"""CLIPTextModel: the text encoder of Stable Diffusion 1.x / 2.x (Radford et al. 2021).

A pre-norm causal transformer over CLIP BPE tokens. The conditioning is its last hidden state
after the final LayerNorm, as diffusers' pipelines use it (SD 2.x's checkpoints simply have 23
of OpenCLIP's 24 layers). `CLIPTextModel.net` has transformers' state-dict keys
(`text_model.embeddings.token_embedding.weight`, ...).

paddlenlp 2.8.1's CLIPTextModel gives the same numbers, but its parameter names differ from
transformers' and importing it costs seconds; this compact network loads SD folders directly
(see docs/models.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddiff.execution import InputSpec, Network
from paddiff.interfaces import TextEncoder
from paddiff.plugins.nn.component_io import load_component_weights, read_config, save_component
from paddiff.plugins.nn.state_dict import export_state_dict, load_state_dict_into
from paddiff.plugins.text_encoders.added_tokens import AddedTokens
from paddiff.plugins.text_encoders.clip_tokenizer import CLIPTokenizer
from paddle import nn

WEIGHTS_NAME = "model.safetensors"
PREFIX = "text_model."
# Older transformers saved the position ids as a buffer; they are always 0..76 and not weights.
IGNORED_KEYS = {"text_model.embeddings.position_ids"}
DEFAULTS = {  # transformers' CLIPTextConfig defaults (the OpenAI ViT-B text tower)
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",  # SD 1.x (OpenAI CLIP); SD 2.x (OpenCLIP) uses "gelu"
    "layer_norm_eps": 1e-5,
}
#: which hidden states `encode` returns: the last layer's after the final LayerNorm (SD 1.x / 2.x),
#: or the penultimate layer's without it (SDXL)
HIDDEN_STATES = ("last", "penultimate")
ACTIVATIONS = {
    "quick_gelu": lambda x: x * F.sigmoid(1.702 * x),  # CLIP's sigmoid approximation of GELU
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate=True),
}


class Embeddings(nn.Layer):
    def __init__(self, config: dict):
        super().__init__()
        self.token_embedding = nn.Embedding(config["vocab_size"], config["hidden_size"])
        self.position_embedding = nn.Embedding(
            config["max_position_embeddings"], config["hidden_size"]
        )

    def forward(self, input_ids):
        positions = paddle.arange(input_ids.shape[1], dtype="int64").unsqueeze(0)
        return self.token_embedding(input_ids) + self.position_embedding(positions)


class SelfAttention(nn.Layer):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, causal_mask):
        b, n, dim = x.shape
        d = dim // self.heads

        def split(t):
            return t.reshape([b, n, self.heads, d]).transpose([0, 2, 1, 3])

        scores = paddle.matmul(split(self.q_proj(x)), split(self.k_proj(x)), transpose_y=True)
        weights = F.softmax(scores * (d**-0.5) + causal_mask, axis=-1)
        out = paddle.matmul(weights, split(self.v_proj(x)))
        return self.out_proj(out.transpose([0, 2, 1, 3]).reshape([b, n, dim]))


class MLP(nn.Layer):
    def __init__(self, config: dict):
        super().__init__()
        self.activation = ACTIVATIONS[config["hidden_act"]]
        self.fc1 = nn.Linear(config["hidden_size"], config["intermediate_size"])
        self.fc2 = nn.Linear(config["intermediate_size"], config["hidden_size"])

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(x)))


class EncoderLayer(nn.Layer):
    def __init__(self, config: dict):
        super().__init__()
        eps = config["layer_norm_eps"]
        self.layer_norm1 = nn.LayerNorm(config["hidden_size"], epsilon=eps)
        self.self_attn = SelfAttention(config["hidden_size"], config["num_attention_heads"])
        self.layer_norm2 = nn.LayerNorm(config["hidden_size"], epsilon=eps)
        self.mlp = MLP(config)

    def forward(self, x, causal_mask):
        x = x + self.self_attn(self.layer_norm1(x), causal_mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Layer):
    def __init__(self, config: dict):
        super().__init__()
        self.layers = nn.LayerList(
            [EncoderLayer(config) for _ in range(config["num_hidden_layers"])]
        )


class TextTransformer(nn.Layer):
    def __init__(self, config: dict):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.final_layer_norm = nn.LayerNorm(
            config["hidden_size"], epsilon=config["layer_norm_eps"]
        )


class CLIPTextNetwork(nn.Layer):
    """ids (B, L) int64 -> hidden states (B, L, hidden_size)."""

    def __init__(self, config: dict, clip_skip: int | None = None, hidden_states: str = "last"):
        super().__init__()
        unknown = config["hidden_act"] not in ACTIVATIONS
        if unknown:
            raise ValueError(
                f"unsupported CLIP hidden_act {config['hidden_act']!r} "
                f"(supported: {', '.join(ACTIVATIONS)})"
            )
        self.text_model = TextTransformer(config)
        if hidden_states not in HIDDEN_STATES:
            raise ValueError(
                f"hidden_states={hidden_states!r}; expected one of {', '.join(HIDDEN_STATES)}"
            )
        # diffusers' clip_skip: take the output of an earlier layer (then the final LayerNorm).
        # SDXL takes the penultimate layer's output as it is, with no final LayerNorm
        # (transformers' hidden_states[-2]; with clip_skip, hidden_states[-2 - clip_skip]).
        self.final_norm = hidden_states == "last"
        self.layers_used = config["num_hidden_layers"] - (clip_skip or 0) - (not self.final_norm)

    def forward(self, input_ids):
        x = self.text_model.embeddings(input_ids)
        n = input_ids.shape[1]
        # Token i attends to tokens 0..i only: a large negative bias above the diagonal.
        causal_mask = paddle.triu(paddle.full([n, n], -1e9, dtype=x.dtype), diagonal=1)
        for layer in self.text_model.encoder.layers[: self.layers_used]:
            x = layer(x, causal_mask)
        return self.text_model.final_layer_norm(x) if self.final_norm else x


class CLIPTextModel(AddedTokens, TextEncoder):
    """Text-encoder plugin for diffusers' `text_encoder/` + `tokenizer/` folders (SD 1.x, 2.x)."""

    network_class = CLIPTextNetwork

    def __init__(
        self,
        config: dict,
        tokenizer: CLIPTokenizer,
        clip_skip: int | None = None,
        hidden_states: str = "last",
    ):
        self.config = {**DEFAULTS, **config}
        self.tokenizer = tokenizer
        self.hidden_states = hidden_states
        self.net = self.network_class(self.config, clip_skip, hidden_states)
        self.net.eval()
        # Batch and length stay dynamic; paddiff.execution chooses how the network runs.
        settings = {**self.config, "clip_skip": clip_skip}
        if hidden_states != "last":  # (the SD 1.x programs keep their cache keys)
            settings["hidden_states"] = hidden_states
        self.runner = Network(
            "text_encoder", self.net, [InputSpec("input_ids", (None, None), "int64")], settings
        )
        self.max_length = tokenizer.max_length
        self.hidden_size = int(self.config["hidden_size"])

    @classmethod
    def from_pretrained(
        cls,
        path,
        tokenizer_path=None,
        clip_skip=None,
        variant: str | None = None,
        hidden_states: str = "last",
        **options,
    ):
        """Load `path` (a `text_encoder/` folder); the tokenizer comes from `tokenizer_path`,
        by default the sibling `tokenizer/` folder."""
        path = Path(path)
        state, source = load_component_weights(path, variant)
        return cls.from_state_dict(
            read_config(path, DEFAULTS),
            state,
            source,
            tokenizer_path=tokenizer_path or path.parent / "tokenizer",
            clip_skip=clip_skip,
            hidden_states=hidden_states,
        )

    @classmethod
    def from_state_dict(
        cls,
        config,
        state,
        source="state dict",
        tokenizer_path=None,
        clip_skip=None,
        tokenizer: CLIPTokenizer | None = None,
        hidden_states: str = "last",
        **options,
    ):
        """Build from a config dict and a state dict (transformers keys); the tokenizer is read
        from `tokenizer_path` (a folder with vocab.json and merges.txt), or given ready-made
        (`tokenizer=`, e.g. `CLIPTokenizer.shipped()` for single-file checkpoints)."""
        if tokenizer is None and tokenizer_path is None:
            raise ValueError(
                f"{source}: CLIPTextModel needs tokenizer_path (vocab.json + merges.txt)"
            )
        if tokenizer is None:
            tokenizer = CLIPTokenizer.from_folder(tokenizer_path)
        rows = int({**DEFAULTS, **config}["vocab_size"])
        if max(tokenizer.vocab.values()) >= rows:  # ids past the embedding table: wrong pair
            raise ValueError(
                f"{source}: the tokenizer ({tokenizer_path or 'given'}) has ids up to "
                f"{max(tokenizer.vocab.values())} but the text encoder embeds only {rows} tokens; "
                "use the tokenizer that belongs to this model"
            )
        with paddle.LazyGuard():  # no random init: strict loading sets every parameter
            model = cls({**DEFAULTS, **config}, tokenizer, clip_skip, hidden_states)
        load_state_dict_into(model.net, to_network_keys(state), source)
        return model

    @classmethod
    def shipped_tokenizer(cls, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
        """CLIP's tokenizer from the vocabulary paddiff ships: what the loader gives single-file
        checkpoints, which carry none (SD 1.x pads with "<|endoftext|>", 2.x with "!")."""
        return CLIPTokenizer.shipped(pad_token=pad_token)

    def save_pretrained(self, folder) -> None:
        """config.json + model.safetensors with transformers' (4.x) `text_model.` keys."""
        config = {
            "architectures": ["CLIPTextModel"],
            "model_type": "clip_text_model",
            **self.config,
        }
        save_component(folder, config, export_state_dict(self.net), WEIGHTS_NAME)

    def tokenize(self, prompts):
        return self.tokenizer(list(prompts))

    def networks(self) -> list[Network]:
        """What runs this component (paddiff.execution decides how)."""
        return [self.runner]

    def encode(self, prompts):
        return self.runner(np.asarray(self.tokenize(prompts), np.int64))

    def token_embedding(self):
        return self.net.text_model.embeddings.token_embedding

    def _replace_token_embedding(self, layer) -> None:
        self.net.text_model.embeddings.token_embedding = layer


def to_network_keys(state: dict) -> dict:
    """transformers 5 saves CLIPTextModel keys without the `text_model.` prefix that 4.x (and
    so every SD checkpoint) uses; accept both, and drop the stale position_ids buffer."""
    if hasattr(state, "renamed"):  # a lazy paddiff.weights.StateDict: rename without reading
        return state.renamed(_network_key)
    out = {}
    for key, value in state.items():
        key = _network_key(key)
        if key is not None:
            out[key] = value
    return out


def _network_key(key: str) -> str | None:
    # (SDXL's second encoder has its projection beside text_model, in every version)
    if not key.startswith((PREFIX, "text_projection.")):
        key = PREFIX + key
    return None if key in IGNORED_KEYS else key
