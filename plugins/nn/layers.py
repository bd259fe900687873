"""Paddle building blocks shared by the UNet and the VAE.

Sublayer attribute names follow diffusers' module names, so that state-dict keys match its
checkpoints one to one (`resnets.0.conv1.weight`, `attn1.to_out.0.weight`, ...). Two op patterns
are avoided on purpose because Paddle 3.3.1's oneDNN executor mishandles them in exported
programs: `nearest_interp` (see `upsample_nearest_2x`) and `concat` of `sin`/`cos` outputs (see
`timestep_embedding`).
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddiff.execution.export import fused_self_attention_supported
from paddle import nn


def timestep_embedding(
    timesteps: paddle.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float
) -> paddle.Tensor:
    """Sinusoidal embedding of (batch,) timesteps (the Transformer's positional encoding).

    Frequencies are exp(-ln(10000) * i / (dim/2 - freq_shift)). The cos half is computed as
    sin(x + pi/2) inside a single `sin`, because oneDNN miscomputes concat(sin(x), cos(x)).
    """
    half = dim // 2
    exponent = paddle.arange(half, dtype="float32") * (-math.log(10000.0) / (half - freq_shift))
    angles = timesteps.astype("float32").unsqueeze(1) * paddle.exp(exponent).unsqueeze(0)
    shifted = angles + math.pi / 2  # sin(x + pi/2) = cos(x)
    parts = [shifted, angles] if flip_sin_to_cos else [angles, shifted]
    return paddle.sin(paddle.concat(parts, axis=1))


def silu(x: paddle.Tensor) -> paddle.Tensor:
    """x * sigmoid(x), written as Paddle's `swish` (the same function): Paddle Inference runs swish
    with a multi-threaded oneDNN kernel and silu with a plain one-thread kernel, 15 against 35 ms
    on a 1x128x256x256 tensor (the VAE decoder has 30 such calls at 256x256)."""
    return F.swish(x)


class TimestepEmbedding(nn.Layer):
    """The MLP that widens the sinusoidal embedding: Linear, SiLU, Linear."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, x):
        return self.linear_2(silu(self.linear_1(x)))


def upsample_nearest_2x(x: paddle.Tensor) -> paddle.Tensor:
    """2x nearest-neighbour upsampling of NCHW as reshape + expand + reshape.

    Same values as F.interpolate(scale_factor=2, mode="nearest"), but without the nearest_interp
    op, which the oneDNN executor refuses in exported programs.
    """
    # No size taken from x.shape: in a program exported with dynamic sizes, shape arithmetic
    # becomes extra ops that also stop oneDNN from fusing the neighbouring ones.
    x = x.unsqueeze([3, 5]).expand([-1, -1, -1, 2, -1, 2])  # n, c, h, 2, w, 2
    return x.flatten(4, 5).flatten(2, 3)


def upsample_nearest_to(x: paddle.Tensor, size: tuple[int, int]) -> paddle.Tensor:
    """Nearest upsampling to an arbitrary size, with torch's index rule floor(out * in / size).

    Used only when a skip connection is not exactly twice the size (odd latent sizes).
    """
    h, w = x.shape[2], x.shape[3]
    rows = paddle.floor(paddle.arange(size[0], dtype="float32") * (h / size[0])).astype("int64")
    cols = paddle.floor(paddle.arange(size[1], dtype="float32") * (w / size[1])).astype("int64")
    return paddle.index_select(paddle.index_select(x, rows, axis=2), cols, axis=3)


class Upsample2D(nn.Layer):
    """Nearest 2x upsampling followed by a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2D(channels, channels, 3, padding=1)

    def forward(self, x, size=None):
        if size is None or (size[0] == 2 * x.shape[2] and size[1] == 2 * x.shape[3]):
            x = upsample_nearest_2x(x)
        else:
            x = upsample_nearest_to(x, size)
        return self.conv(x)


class Downsample2D(nn.Layer):
    """Stride-2 3x3 convolution. padding=0 pads one pixel on the right and bottom only, as the
    original VAE does (an asymmetric pad that Conv2D's own padding cannot express)."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2D(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, [0, 1, 0, 1], data_format="NCHW")
        return self.conv(x)


class ResnetBlock2D(nn.Layer):
    """GroupNorm-SiLU-conv twice, with the time embedding added between, and a residual."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int | None,
        groups: int,
        eps: float,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, epsilon=eps)
        self.conv1 = nn.Conv2D(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(groups, out_channels, epsilon=eps)
        self.conv2 = nn.Conv2D(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            nn.Conv2D(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x, temb=None):
        h = self.conv1(silu(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(silu(temb)).unsqueeze([2, 3])
        h = self.conv2(silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


# Upper bound on attention scores held at once per batch entry (heads x queries x keys floats):
# 2**27 floats = 512 MB. SD at 512x512 (4096 tokens, 8 heads) stays in one piece; larger images
# are processed in query chunks, which gives the same result (each softmax row is independent).
MAX_SCORES_PER_SAMPLE = 2**27


def attention(q, k, v, heads: int):
    """Multi-head softmax(q k^T / sqrt(d)) v on (batch, tokens, heads * d) tensors."""
    _, n, inner = q.shape
    m, d = k.shape[1], inner // heads

    def split(t):
        # 0 keeps that size of the input: constant shape attributes, whatever the batch and
        # token counts, let Paddle Inference fuse reshape + transpose into the matmul.
        return t.reshape([0, 0, heads, d]).transpose([0, 2, 1, 3])

    def scaled_dot_product(q):
        scores = paddle.matmul(q, k, transpose_y=True) * (d**-0.5)
        return paddle.matmul(F.softmax(scores, axis=-1), v)

    q, k, v = split(q), split(k), split(v)
    # Token counts are ints except in a program traced with dynamic spatial sizes.
    if not (isinstance(n, int) and isinstance(m, int)) or heads * n * m <= MAX_SCORES_PER_SAMPLE:
        out = scaled_dot_product(q)
    else:
        rows = max(1, MAX_SCORES_PER_SAMPLE // (heads * m))
        chunks = [scaled_dot_product(q[:, :, i : i + rows]) for i in range(0, n, rows)]
        out = paddle.concat(chunks, axis=2)
    return out.transpose([0, 2, 1, 3]).reshape([0, 0, inner])


def fused_self_attention(q, k, v, heads: int):
    """`attention(q, k, v, heads)` for self-attention, by the fused op (export only)."""
    from paddle import _C_ops

    d = q.shape[-1] // heads
    packed = paddle.stack([q, k, v], axis=2).reshape([0, 0, 3, heads, d])  # b, n, 3, heads, d
    out = _C_ops.self_dp_attention(packed, d**-0.5, heads)  # b, n, heads, d
    return out.reshape([0, 0, heads * d])


class Attention(nn.Layer):
    """diffusers' `Attention` in the two forms SD uses: the transformer's (q/k/v without bias,
    optional cross-attention context) and the VAE's single-head spatial self-attention."""

    def __init__(
        self,
        query_dim: int,
        heads: int,
        head_dim: int,
        context_dim: int | None = None,
        bias: bool = False,
    ):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias_attr=None if bias else False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias_attr=None if bias else False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias_attr=None if bias else False)
        # A list because diffusers' to_out is ModuleList([Linear, Dropout]): keys to_out.0.*
        self.to_out = nn.LayerList([nn.Linear(inner, query_dim)])

    def forward(self, x, context=None):
        if context is None and not paddle.in_dynamic_mode() and fused_self_attention_supported():
            out = fused_self_attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads)
            return self.to_out[0](out)
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out[0](out)


class GEGLU(nn.Layer):
    """Gated GELU (Shazeer 2020): one projection to twice the width, half gates the other half."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        hidden, gate = paddle.chunk(self.proj(x), 2, axis=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Layer):
    """GEGLU then Linear; index 1 of diffusers' `net` is a dropout, kept as an Identity so the
    Linear's keys stay `net.2.*`."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.LayerList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Layer):
    """Pre-norm self-attention, cross-attention on the text context, and GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Layer):
    """Spatial transformer: GroupNorm, project in, transformer blocks over the h*w tokens,
    project out, residual. SD 1.x projects with 1x1 convolutions, SD 2.x with Linear layers
    (`use_linear_projection`), applied before / after flattening respectively."""

    def __init__(
        self,
        heads: int,
        head_dim: int,
        in_channels: int,
        num_layers: int,
        context_dim: int,
        groups: int,
        use_linear_projection: bool,
    ):
        super().__init__()
        inner = heads * head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(groups, in_channels, epsilon=1e-6)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, inner)
            self.proj_out = nn.Linear(inner, in_channels)
        else:
            self.proj_in = nn.Conv2D(in_channels, inner, 1)
            self.proj_out = nn.Conv2D(inner, in_channels, 1)
        self.transformer_blocks = nn.LayerList(
            [BasicTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(num_layers)]
        )

    def forward(self, x, context):
        b, _, h, w = x.shape
        residual = x
        x = self.norm(x)
        if not self.use_linear_projection:
            x = self.proj_in(x)
        x = x.flatten(2).transpose([0, 2, 1])
        if self.use_linear_projection:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.use_linear_projection:
            x = self.proj_out(x)
        x = x.transpose([0, 2, 1]).reshape([b, -1, h, w])
        if not self.use_linear_projection:
            x = self.proj_out(x)
        return x + residual
