"""CLIP's vision transformer (Radford et al. 2021) in Paddle, for the image safety checker.

Attribute names mirror transformers' CLIPVisionModel as Stable Diffusion's `safety_checker/`
checkpoints store it (`vision_model.embeddings.patch_embedding.weight`, `...pre_layrnorm...`
with the original spelling), so loading is a state-dict call plus the Linear transposition.
A pre-norm ViT: patches + a class token + learned positions, LayerNorm, N x (attention, MLP)
residual blocks, and the class token's final state after a LayerNorm as the pooled output.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import paddle
import paddle.nn.functional as F
from paddle import nn


@dataclass
class CLIPVisionConfig:
    """The fields of transformers' CLIPVisionConfig that the network needs (same defaults)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"

    @classmethod
    def from_dict(cls, values: dict) -> CLIPVisionConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def quick_gelu(x: paddle.Tensor) -> paddle.Tensor:
    """OpenAI CLIP's GELU approximation, x * sigmoid(1.702 x)."""
    return x * F.sigmoid(1.702 * x)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


class CLIPVisionEmbeddings(nn.Layer):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.image_size = config.image_size
        self.class_embedding = self.create_parameter([config.hidden_size])
        self.patch_embedding = nn.Conv2D(
            config.num_channels,
            config.hidden_size,
            config.patch_size,
            stride=config.patch_size,
            bias_attr=False,
        )
        num_positions = (config.image_size // config.patch_size) ** 2 + 1
        self.position_embedding = nn.Embedding(num_positions, config.hidden_size)

    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        if tuple(pixel_values.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"the vision model takes {self.image_size}x{self.image_size} images, "
                f"got {tuple(pixel_values.shape[2:])}"
            )
        patches = self.patch_embedding(pixel_values).flatten(2).transpose([0, 2, 1])
        class_token = self.class_embedding.reshape([1, 1, -1]).expand([patches.shape[0], 1, -1])
        return paddle.concat([class_token, patches], axis=1) + self.position_embedding.weight


class CLIPAttention(nn.Layer):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.head_dim = width // self.heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        batch, tokens, _ = x.shape

        def heads(y):  # (B, T, D) -> (B, H, T, D/H)
            return y.reshape([batch, tokens, self.heads, self.head_dim]).transpose([0, 2, 1, 3])

        q, k, v = heads(self.q_proj(x) * self.scale), heads(self.k_proj(x)), heads(self.v_proj(x))
        weights = F.softmax(paddle.matmul(q, k, transpose_y=True), axis=-1)
        out = paddle.matmul(weights, v).transpose([0, 2, 1, 3]).reshape([batch, tokens, -1])
        return self.out_proj(out)


class CLIPMLP(nn.Layer):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        if config.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {config.hidden_act!r}; supported: {sorted(ACTIVATIONS)}"
            )
        self.activation = ACTIVATIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class CLIPEncoderLayer(nn.Layer):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Layer):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.layers = nn.LayerList(
            [CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)]
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class CLIPVisionTransformer(nn.Layer):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)

    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        """The pooled output: the class token after the last block and the final LayerNorm."""
        hidden = self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))
        return self.post_layernorm(hidden[:, 0])
