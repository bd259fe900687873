"""The UNet's down, mid and up blocks (diffusers' CrossAttnDownBlock2D & co., same keys)."""

from __future__ import annotations

import paddle
from paddiff.plugins.nn.layers import Downsample2D, ResnetBlock2D, Transformer2DModel, Upsample2D
from paddle import nn


class BlockSettings:
    """What every block of one UNet shares."""

    def __init__(self, temb_channels, groups, eps, context_dim, use_linear_projection):
        self.temb_channels = temb_channels
        self.groups = groups
        self.eps = eps
        self.context_dim = context_dim
        self.use_linear_projection = use_linear_projection

    def resnet(self, in_channels, out_channels, output_scale_factor=1.0):
        return ResnetBlock2D(
            in_channels,
            out_channels,
            self.temb_channels,
            self.groups,
            self.eps,
            output_scale_factor,
        )

    def transformer(self, channels, heads, layers):
        return Transformer2DModel(
            heads,
            channels // heads,
            channels,
            layers,
            self.context_dim,
            self.groups,
            self.use_linear_projection,
        )


class DownBlock(nn.Layer):
    """Resnets (each optionally followed by a spatial transformer), then a stride-2 conv.

    Returns the features and the skip states the up path consumes: one per resnet, and one
    after the downsampler.
    """

    def __init__(self, s, in_ch, out_ch, num_layers, heads, transformer_layers, downsample, pad):
        super().__init__()
        self.resnets = nn.LayerList(
            [s.resnet(in_ch if i == 0 else out_ch, out_ch) for i in range(num_layers)]
        )
        if heads:
            self.attentions = nn.LayerList(
                [s.transformer(out_ch, heads, transformer_layers) for _ in range(num_layers)]
            )
        else:
            self.attentions = None
        if downsample:
            self.downsamplers = nn.LayerList([Downsample2D(out_ch, padding=pad)])
        else:
            self.downsamplers = None

    def forward(self, x, temb, context):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Layer):
    """Resnets over [features, skip] concatenations (optionally each followed by a spatial
    transformer), then nearest 2x upsampling and a conv."""

    def __init__(self, s, in_ch, prev_ch, out_ch, num_layers, heads, transformer_layers, upsample):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_ch = in_ch if i == num_layers - 1 else out_ch
            resnets.append(s.resnet((prev_ch if i == 0 else out_ch) + skip_ch, out_ch))
        self.resnets = nn.LayerList(resnets)
        if heads:
            self.attentions = nn.LayerList(
                [s.transformer(out_ch, heads, transformer_layers) for _ in range(num_layers)]
            )
        else:
            self.attentions = None
        self.upsamplers = nn.LayerList([Upsample2D(out_ch)]) if upsample else None

    def forward(self, x, skips, temb, context, upsample_size=None):
        """`skips`: this block's skip states in the order the down path produced them; they are
        consumed last first, mirroring the down path."""
        for i, resnet in enumerate(self.resnets):
            x = resnet(paddle.concat([x, skips[-1 - i]], axis=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class MidBlock(nn.Layer):
    """resnet, (transformer, resnet) x layers: UNetMidBlock2DCrossAttn."""

    def __init__(self, s, channels, heads, transformer_layers, output_scale_factor):
        super().__init__()
        self.attentions = nn.LayerList([s.transformer(channels, heads, transformer_layers)])
        self.resnets = nn.LayerList(
            [s.resnet(channels, channels, output_scale_factor) for _ in range(2)]
        )

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)
