"""Compact Paddle networks used to *train* the embedded model, with diffusers/transformers key names.

Three networks, each the same computation as its reference class for the configs the embedded
model uses, with parameter names equal to that class's state-dict keys:

- `AutoencoderKLNet`           = diffusers `AutoencoderKL` (DownEncoderBlock2D / UpDecoderBlock2D)
- `UNet2DConditionNet`         = diffusers `UNet2DConditionModel` (DownBlock2D, CrossAttnDownBlock2D,
                                 UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D; conv
                                 proj_in/proj_out as in SD 1.x)
- `BertNet`                    = transformers `BertModel` (absolute positions, post-LayerNorm)

`export_state_dict` writes them in the reference layout (Linear weights transposed to torch's
[out, in]), so the exported folder loads through paddiff's regular plugins like any SD model; the
parity test checks these nets against diffusers/transformers on fixtures made by the reference.
"""

from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn


def _group_norm(channels: int, groups: int, eps: float) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, epsilon=eps)


def _attention(q, k, v, heads: int):
    """Multi-head softmax(q k^T / sqrt(d)) v on (batch, tokens, heads * d) tensors."""
    b, n, inner = q.shape
    d = inner // heads

    def split(x):
        return x.reshape([b, x.shape[1], heads, d]).transpose([0, 2, 1, 3])

    q, k, v = split(q), split(k), split(v)
    weights = F.softmax(paddle.matmul(q, k, transpose_y=True) * (d**-0.5), axis=-1)
    return paddle.matmul(weights, v).transpose([0, 2, 1, 3]).reshape([b, n, inner])


class ResnetBlock2D(nn.Layer):
    """GroupNorm-SiLU-conv twice, optional timestep bias, 1x1 shortcut when channels change."""

    def __init__(self, cin, cout, groups, eps, temb_channels=None):
        super().__init__()
        self.norm1 = _group_norm(cin, groups, eps)
        self.conv1 = nn.Conv2D(cin, cout, 3, padding=1)
        if temb_channels:
            self.time_emb_proj = nn.Linear(temb_channels, cout)
        self.norm2 = _group_norm(cout, groups, eps)
        self.conv2 = nn.Conv2D(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2D(cin, cout, 1)

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else x
        return shortcut + h


class Downsample2D(nn.Layer):
    def __init__(self, channels, asymmetric_pad: bool):
        super().__init__()
        # The VAE encoder pads right/bottom by one and convolves without padding (diffusers'
        # `padding=0` case); the UNet uses symmetric padding 1.
        self.asymmetric_pad = asymmetric_pad
        self.conv = nn.Conv2D(channels, channels, 3, stride=2, padding=0 if asymmetric_pad else 1)

    def forward(self, x):
        if self.asymmetric_pad:
            x = F.pad(x, [0, 1, 0, 1])
        return self.conv(x)


class Upsample2D(nn.Layer):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2D(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


# -- the VAE ---------------------------------------------------------------------------------


class VAEAttention(nn.Layer):
    """The VAE mid-block's single-head spatial self-attention with a residual connection."""

    def __init__(self, channels, groups, eps):
        super().__init__()
        self.group_norm = _group_norm(channels, groups, eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.LayerList([nn.Linear(channels, channels)])

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.group_norm(x).reshape([b, c, h * w]).transpose([0, 2, 1])
        out = _attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens), heads=1)
        out = self.to_out[0](out).transpose([0, 2, 1]).reshape([b, c, h, w])
        return x + out


class MidBlock(nn.Layer):
    """resnet, attention, resnet at the lowest resolution (VAE flavour: no timestep, no text)."""

    def __init__(self, channels, groups, eps):
        super().__init__()
        self.resnets = nn.LayerList([ResnetBlock2D(channels, channels, groups, eps) for _ in "ab"])
        self.attentions = nn.LayerList([VAEAttention(channels, groups, eps)])

    def forward(self, x):
        x = self.resnets[0](x)
        return self.resnets[1](self.attentions[0](x))


class CoderBlock(nn.Layer):
    """DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional down/upsampler."""

    def __init__(self, cin, cout, layers, groups, eps, resample=None):
        super().__init__()
        self.resnets = nn.LayerList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, groups, eps) for i in range(layers)]
        )
        if resample == "down":
            self.downsamplers = nn.LayerList([Downsample2D(cout, asymmetric_pad=True)])
        elif resample == "up":
            self.upsamplers = nn.LayerList([Upsample2D(cout)])

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        for sampler in getattr(self, "downsamplers", []) or getattr(self, "upsamplers", []):
            x = sampler(x)
        return x


class Encoder(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        ch, groups, eps = cfg["block_out_channels"], cfg["norm_num_groups"], 1e-6
        layers, last = cfg["layers_per_block"], len(ch) - 1
        self.conv_in = nn.Conv2D(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.LayerList(
            [
                CoderBlock(
                    ch[max(i - 1, 0)], ch[i], layers, groups, eps, None if i == last else "down"
                )
                for i in range(len(ch))
            ]
        )
        self.mid_block = MidBlock(ch[-1], groups, eps)
        self.conv_norm_out = _group_norm(ch[-1], groups, eps)
        self.conv_out = nn.Conv2D(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        ch, groups, eps = cfg["block_out_channels"][::-1], cfg["norm_num_groups"], 1e-6
        layers, last = cfg["layers_per_block"] + 1, len(ch) - 1
        self.conv_in = nn.Conv2D(cfg["latent_channels"], ch[0], 3, padding=1)
        self.mid_block = MidBlock(ch[0], groups, eps)
        self.up_blocks = nn.LayerList(
            [
                CoderBlock(
                    ch[max(i - 1, 0)], ch[i], layers, groups, eps, None if i == last else "up"
                )
                for i in range(len(ch))
            ]
        )
        self.conv_norm_out = _group_norm(ch[-1], groups, eps)
        self.conv_out = nn.Conv2D(ch[-1], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKLNet(nn.Layer):
    def __init__(self, cfg: dict):
        super().__init__()
        latent = cfg["latent_channels"]
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2D(2 * latent, 2 * latent, 1)
        self.post_quant_conv = nn.Conv2D(latent, latent, 1)

    def encode(self, images):
        """(mean, logvar) of the diagonal Gaussian posterior, logvar clipped as diffusers does."""
        mean, logvar = paddle.chunk(self.quant_conv(self.encoder(images)), 2, axis=1)
        return mean, paddle.clip(logvar, -30.0, 20.0)

    def decode(self, latents):
        return self.decoder(self.post_quant_conv(latents))


# -- the UNet --------------------------------------------------------------------------------


class CrossAttention(nn.Layer):
    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias_attr=False)
        self.to_k = nn.Linear(context_dim, dim, bias_attr=False)
        self.to_v = nn.Linear(context_dim, dim, bias_attr=False)
        self.to_out = nn.LayerList([nn.Linear(dim, dim)])

    def forward(self, x, context=None):
        context = x if context is None else context
        out = _attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out[0](out)


class GEGLU(nn.Layer):
    """Linear to twice the width, then value * GELU(gate) (Shazeer 2020)."""

    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        value, gate = paddle.chunk(self.proj(x), 2, axis=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Layer):
    def __init__(self, dim):
        super().__init__()
        # diffusers' key layout: net.0 = GEGLU, net.1 = dropout, net.2 = output Linear.
        self.net = nn.LayerList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Layer):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Layer):
    """Spatial transformer: GroupNorm, 1x1 conv in, one transformer block over pixels, 1x1 out."""

    def __init__(self, channels, heads, context_dim, groups):
        super().__init__()
        self.norm = _group_norm(channels, groups, 1e-6)
        self.proj_in = nn.Conv2D(channels, channels, 1)
        self.transformer_blocks = nn.LayerList(
            [BasicTransformerBlock(channels, heads, context_dim)]
        )
        self.proj_out = nn.Conv2D(channels, channels, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).reshape([b, c, h * w]).transpose([0, 2, 1])
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.transpose([0, 2, 1]).reshape([b, c, h, w]))


class UNetBlock(nn.Layer):
    """One down or up block: resnets, attentions after each resnet if cross-attention, resampler."""

    def __init__(self, resnet_channels, cout, temb, groups, attention=None, resample=None):
        super().__init__()
        self.resnets = nn.LayerList(
            [ResnetBlock2D(cin, cout, groups, 1e-5, temb) for cin in resnet_channels]
        )
        if attention:
            heads, context_dim = attention
            self.attentions = nn.LayerList(
                [Transformer2DModel(cout, heads, context_dim, groups) for _ in resnet_channels]
            )
        if resample == "down":
            self.downsamplers = nn.LayerList([Downsample2D(cout, asymmetric_pad=False)])
        elif resample == "up":
            self.upsamplers = nn.LayerList([Upsample2D(cout)])


class UNetMidBlock2DCrossAttn(nn.Layer):
    def __init__(self, channels, temb, groups, heads, context_dim):
        super().__init__()
        self.resnets = nn.LayerList(
            [ResnetBlock2D(channels, channels, groups, 1e-5, temb) for _ in range(2)]
        )
        self.attentions = nn.LayerList([Transformer2DModel(channels, heads, context_dim, groups)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class TimestepEmbedding(nn.Layer):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


def timestep_features(timesteps, dim: int):
    """Sinusoidal features [cos(t f_i), sin(t f_i)], f_i = 10000^(-i / (dim / 2)) (flip_sin_to_cos,
    shift 0, as SD's UNet config has it)."""
    half = dim // 2
    freqs = paddle.exp(-math.log(10000.0) * paddle.arange(half, dtype="float32") / half)
    angles = timesteps.astype("float32")[:, None] * freqs[None, :]
    return paddle.concat([paddle.cos(angles), paddle.sin(angles)], axis=-1)


class UNet2DConditionNet(nn.Layer):
    def __init__(self, cfg: dict):
        super().__init__()
        ch, layers = cfg["block_out_channels"], cfg["layers_per_block"]
        groups, context_dim = cfg["norm_num_groups"], cfg["cross_attention_dim"]
        heads = cfg["attention_head_dim"]  # diffusers reads this as the number of heads
        heads = [heads] * len(ch) if isinstance(heads, int) else list(heads)
        temb = 4 * ch[0]
        self.ch0, self.layers = ch[0], layers
        self.conv_in = nn.Conv2D(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        last = len(ch) - 1

        self.down_blocks = nn.LayerList()
        for i, (kind, cout) in enumerate(zip(cfg["down_block_types"], ch, strict=True)):
            cin = ch[max(i - 1, 0)]
            attention = (heads[i], context_dim) if kind.startswith("CrossAttn") else None
            resnet_in = [cin] + [cout] * (layers - 1)
            resample = None if i == last else "down"
            self.down_blocks.append(UNetBlock(resnet_in, cout, temb, groups, attention, resample))

        self.mid_block = UNetMidBlock2DCrossAttn(ch[-1], temb, groups, heads[-1], context_dim)

        self.up_blocks = nn.LayerList()
        rev, rev_heads = ch[::-1], heads[::-1]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, cout, skip_in = rev[max(i - 1, 0)], rev[i], rev[min(i + 1, last)]
            resnet_in = [
                (prev if j == 0 else cout) + (skip_in if j == layers else cout)
                for j in range(layers + 1)
            ]
            attention = (rev_heads[i], context_dim) if kind.startswith("CrossAttn") else None
            resample = None if i == last else "up"
            self.up_blocks.append(UNetBlock(resnet_in, cout, temb, groups, attention, resample))

        self.conv_norm_out = _group_norm(ch[0], groups, 1e-5)
        self.conv_out = nn.Conv2D(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, sample, timesteps, context):
        temb = self.time_embedding(timestep_features(timesteps, self.ch0))
        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            for i, resnet in enumerate(block.resnets):
                x = resnet(x, temb)
                if hasattr(block, "attentions"):
                    x = block.attentions[i](x, context)
                skips.append(x)
            if hasattr(block, "downsamplers"):
                x = block.downsamplers[0](x)
                skips.append(x)
        x = self.mid_block(x, temb, context)
        for block in self.up_blocks:
            for i, resnet in enumerate(block.resnets):
                x = resnet(paddle.concat([x, skips.pop()], axis=1), temb)
                if hasattr(block, "attentions"):
                    x = block.attentions[i](x, context)
            if hasattr(block, "upsamplers"):
                x = block.upsamplers[0](x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# -- the text encoder ------------------------------------------------------------------------


class _Dense(nn.Layer):
    """transformers' BertSelfOutput / BertOutput: dense, (dropout), residual, LayerNorm."""

    def __init__(self, cin, cout, eps):
        super().__init__()
        self.dense = nn.Linear(cin, cout)
        self.LayerNorm = nn.LayerNorm(cout, epsilon=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _SelfAttention(nn.Layer):
    def __init__(self, dim):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)


class _Attention(nn.Layer):
    def __init__(self, dim, eps):
        super().__init__()
        self.self = _SelfAttention(dim)
        self.output = _Dense(dim, dim, eps)


class _Intermediate(nn.Layer):
    def __init__(self, dim, inner):
        super().__init__()
        self.dense = nn.Linear(dim, inner)


class BertLayer(nn.Layer):
    def __init__(self, dim, inner, heads, eps):
        super().__init__()
        self.heads = heads
        self.attention = _Attention(dim, eps)
        self.intermediate = _Intermediate(dim, inner)
        self.output = _Dense(inner, dim, eps)

    def forward(self, x):
        a = self.attention.self
        context = _attention(a.query(x), a.key(x), a.value(x), self.heads)
        x = self.attention.output(context, x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)  # exact (erf) GELU


class BertEmbeddings(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], dim)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], dim)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], dim)
        self.LayerNorm = nn.LayerNorm(dim, epsilon=cfg["layer_norm_eps"])

    def forward(self, ids):
        positions = paddle.arange(ids.shape[1])[None, :]
        token_types = paddle.zeros_like(ids)  # one segment: type 0 everywhere, as transformers
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_types)
        )
        return self.LayerNorm(x)


class _Encoder(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.LayerList(
            [
                BertLayer(
                    cfg["hidden_size"],
                    cfg["intermediate_size"],
                    cfg["num_attention_heads"],
                    cfg["layer_norm_eps"],
                )
                for _ in range(cfg["num_hidden_layers"])
            ]
        )


class _Pooler(nn.Layer):
    def __init__(self, dim):
        super().__init__()
        self.dense = nn.Linear(dim, dim)  # unused for conditioning; kept for the BertModel layout


class BertNet(nn.Layer):
    """BERT without an attention mask: every position, padding included, is attended, as SD-style
    pipelines call their text encoders (no mask), and the last hidden states are the result."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.pooler = _Pooler(cfg["hidden_size"])

    def forward(self, ids):
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x)
        return x


# -- export ----------------------------------------------------------------------------------


def export_state_dict(net: nn.Layer) -> dict[str, np.ndarray]:
    """The net's parameters under the reference key names, Linear weights as torch's [out, in]."""
    linear = {name for name, layer in net.named_sublayers() if isinstance(layer, nn.Linear)}
    out = {}
    for name, param in net.named_parameters():
        value = param.numpy().astype(np.float32)
        layer, _, leaf = name.rpartition(".")
        if leaf == "weight" and layer in linear:
            value = value.T
        out[name] = np.ascontiguousarray(value)
    return out


def import_state_dict(net: nn.Layer, state: dict[str, np.ndarray]) -> None:
    """The inverse of `export_state_dict`, strict about missing/unexpected/mis-shaped keys."""
    linear = {name for name, layer in net.named_sublayers() if isinstance(layer, nn.Linear)}
    params = dict(net.named_parameters())
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    for name, param in params.items():
        value = state[name]
        layer, _, leaf = name.rpartition(".")
        if leaf == "weight" and layer in linear:
            value = value.T
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{name}: shape {value.shape} does not fit {param.shape}")
        param.set_value(np.ascontiguousarray(value, dtype=np.float32))
