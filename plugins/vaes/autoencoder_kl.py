"""AutoencoderKL: Stable Diffusion's VAE (Rombach et al. 2022), driven by diffusers' config.json.

`AutoencoderKL.net` holds the Paddle network with diffusers' state-dict keys (`encoder.*`,
`decoder.*`, `quant_conv.*`, `post_quant_conv.*`); the class itself is the NumPy `VAE` plugin.
Latents crossing the interface are unscaled: the pipeline multiplies by `scaling_factor`.
"""

from __future__ import annotations

import numpy as np
import paddle
from paddiff.execution import InputSpec, Network
from paddiff.interfaces import VAE
from paddiff.plugins.nn.component_io import load_component_weights, read_config, save_component
from paddiff.plugins.nn.layers import Attention, Downsample2D, ResnetBlock2D, Upsample2D, silu
from paddiff.plugins.nn.state_dict import export_state_dict, load_state_dict_into
from paddle import nn

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
DEFAULTS = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D"],
    "block_out_channels": [64],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,  # SD 1.x/2.x; SDXL's VAE says 0.13025
    "shift_factor": None,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
}
SUPPORTED_VALUES = {
    "act_fn": ("silu",),
    "shift_factor": (None, 0, 0.0),
    "mid_block_add_attention": (True,),
}
EPS = 1e-6  # every norm of this VAE


class SpatialSelfAttention(Attention):
    """The VAE's one-head self-attention over all pixels, with its own GroupNorm and residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__(channels, heads=1, head_dim=channels, bias=True)
        self.group_norm = nn.GroupNorm(groups, channels, epsilon=EPS)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.group_norm(x).reshape([b, c, h * w]).transpose([0, 2, 1])
        out = super().forward(tokens)
        return x + out.transpose([0, 2, 1]).reshape([b, c, h, w])


class MidBlock(nn.Layer):
    """resnet, attention, resnet (diffusers' UNetMidBlock2D without time embedding)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.attentions = nn.LayerList([SpatialSelfAttention(channels, groups)])
        self.resnets = nn.LayerList(
            [ResnetBlock2D(channels, channels, None, groups, EPS) for _ in range(2)]
        )

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class EncoderBlock(nn.Layer):
    def __init__(self, in_ch, out_ch, num_layers, groups, downsample):
        super().__init__()
        self.resnets = nn.LayerList(
            [
                ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, None, groups, EPS)
                for i in range(num_layers)
            ]
        )
        self.downsamplers = nn.LayerList([Downsample2D(out_ch, padding=0)]) if downsample else None

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class DecoderBlock(nn.Layer):
    def __init__(self, in_ch, out_ch, num_layers, groups, upsample):
        super().__init__()
        self.resnets = nn.LayerList(
            [
                ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, None, groups, EPS)
                for i in range(num_layers)
            ]
        )
        self.upsamplers = nn.LayerList([Upsample2D(out_ch)]) if upsample else None

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class Encoder(nn.Layer):
    """Image -> mean and log-variance of the latent (2 * latent_channels channels)."""

    def __init__(self, config: dict):
        super().__init__()
        channels, groups = config["block_out_channels"], config["norm_num_groups"]
        self.conv_in = nn.Conv2D(config["in_channels"], channels[0], 3, padding=1)
        self.down_blocks = nn.LayerList(
            [
                EncoderBlock(
                    channels[max(i - 1, 0)],
                    channels[i],
                    config["layers_per_block"],
                    groups,
                    downsample=i < len(channels) - 1,
                )
                for i in range(len(channels))
            ]
        )
        self.mid_block = MidBlock(channels[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], epsilon=EPS)
        self.conv_out = nn.Conv2D(channels[-1], 2 * config["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(silu(self.conv_norm_out(x)))


class Decoder(nn.Layer):
    """Latent -> image; one more resnet per block than the encoder."""

    def __init__(self, config: dict):
        super().__init__()
        channels, groups = config["block_out_channels"][::-1], config["norm_num_groups"]
        self.conv_in = nn.Conv2D(config["latent_channels"], channels[0], 3, padding=1)
        self.mid_block = MidBlock(channels[0], groups)
        self.up_blocks = nn.LayerList(
            [
                DecoderBlock(
                    channels[max(i - 1, 0)],
                    channels[i],
                    config["layers_per_block"] + 1,
                    groups,
                    upsample=i < len(channels) - 1,
                )
                for i in range(len(channels))
            ]
        )
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], epsilon=EPS)
        self.conv_out = nn.Conv2D(channels[-1], config["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(silu(self.conv_norm_out(x)))


class AutoencoderKLNetwork(nn.Layer):
    def __init__(self, config: dict):
        super().__init__()
        problems = [
            f"{key}={config[key]!r}"
            for key, allowed in SUPPORTED_VALUES.items()
            if config.get(key) not in allowed
        ]
        levels = len(config["block_out_channels"])
        for key, block in (
            ("down_block_types", "DownEncoderBlock2D"),
            ("up_block_types", "UpDecoderBlock2D"),
        ):
            if list(config[key]) != [block] * levels:
                problems.append(f"{key}={config[key]!r} (supported: {levels} x {block!r})")
        if problems:
            raise ValueError("unsupported AutoencoderKL config: " + ", ".join(problems))
        latent = config["latent_channels"]
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2D(2 * latent, 2 * latent, 1) if config["use_quant_conv"] else None
        self.post_quant_conv = (
            nn.Conv2D(latent, latent, 1) if config["use_post_quant_conv"] else None
        )

    def moments(self, images):
        """(mean, logvar) of the diagonal Gaussian posterior q(z | images)."""
        h = self.encoder(images)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = paddle.chunk(h, 2, axis=1)
        return mean, paddle.clip(logvar, -30.0, 20.0)  # the clamp keeps exp() finite

    def decode(self, latents):
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        return self.decoder(latents)

    def forward(self, latents):
        """Decoding is the generation path, so it is what `forward` (and an export) runs."""
        return self.decode(latents)


class _Half(nn.Layer):
    """One half of the VAE (encoder or decoder) as a Layer of its own, to export on its own.

    It registers only the sub-layers that half uses, so its export and its cache key see its own
    weights and never the other half's (which the other half's program may have released)."""

    def __init__(self, run, **parts):
        super().__init__()
        for name, part in parts.items():
            setattr(self, name, part)
        self._run = run  # a bound method of the whole network (not a sub-layer)

    def forward(self, x):
        return self._run(x)


class AutoencoderKL(VAE):
    """VAE plugin for diffusers' `vae/` folders.

    Tiled decoding (off by default) decodes overlapping latent tiles one at a time and blends
    them with linear ramps, so memory stays bounded for large images. GroupNorm statistics are
    then per tile, so the result differs slightly from a whole-image decode (as in diffusers).
    """

    def __init__(self, config: dict, tile_size: int | None = None, tile_overlap: int = 8):
        self.config = {**DEFAULTS, **config}
        self.net = AutoencoderKLNetwork(self.config)
        self.net.eval()
        # Batch and image size stay dynamic; paddiff.execution chooses how the networks run.
        latent, channels = self.config["latent_channels"], self.config["in_channels"]
        decoder = _Half(
            self.net.decode, decoder=self.net.decoder, post_quant_conv=self.net.post_quant_conv
        )
        encoder = _Half(self.net.moments, encoder=self.net.encoder, quant_conv=self.net.quant_conv)
        self.runner = Network(
            "vae_decoder", decoder, [InputSpec("latents", (None, latent, None, None))], self.config
        )
        self.encoder_runner = Network(
            "vae_encoder",
            encoder,
            [InputSpec("images", (None, channels, None, None))],
            self.config,
        )
        self.scaling_factor = float(self.config["scaling_factor"])
        self.latent_channels = int(self.config["latent_channels"])
        self.downsample_factor = 2 ** (len(self.config["block_out_channels"]) - 1)
        self.enable_tiling(tile_size, tile_overlap)

    @classmethod
    def from_pretrained(
        cls, path, tile_size=None, tile_overlap=8, variant: str | None = None, **options
    ):
        """Load `path` (a `vae/` folder); tiling as in `enable_tiling`."""
        state, source = load_component_weights(path, variant)
        config = read_config(path, DEFAULTS)
        return cls.from_state_dict(config, state, source, tile_size, tile_overlap)

    @classmethod
    def from_state_dict(
        cls, config, state, source="state dict", tile_size=None, tile_overlap=8, **options
    ):
        """Build from a config dict and a state dict (diffusers keys)."""
        with paddle.LazyGuard():  # no random init: strict loading sets every parameter
            model = cls({**DEFAULTS, **config}, tile_size, tile_overlap)
        load_state_dict_into(model.net, state, source)
        return model

    def save_pretrained(self, folder) -> None:
        config = {"_class_name": "AutoencoderKL", **self.config}
        save_component(folder, config, export_state_dict(self.net), WEIGHTS_NAME)

    def enable_tiling(self, tile_size: int | None, tile_overlap: int = 8) -> None:
        """Decode latents larger than `tile_size` (latent pixels) in tiles; None turns it off."""
        if tile_size is not None and not 0 <= tile_overlap < tile_size:
            raise ValueError(f"tile_overlap must be in [0, tile_size), got {tile_overlap}")
        self.tile_size, self.tile_overlap = tile_size, tile_overlap

    def networks(self) -> list[Network]:
        """What runs this component (paddiff.execution decides how)."""
        return [self.runner, self.encoder_runner]

    def posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and log-variance of q(z | images), unscaled."""
        mean, logvar = self.encoder_runner(np.ascontiguousarray(images, np.float32))
        return mean, logvar

    def encode(self, images, generator=None):
        mean, logvar = self.posterior(images)
        if generator is None:
            return mean
        return mean + np.exp(0.5 * logvar) * generator.randn(mean.shape)

    def decode(self, latents):
        latents = np.asarray(latents, np.float32)
        if self.tile_size is not None and max(latents.shape[2:]) > self.tile_size:
            return self._decode_tiled(latents)
        return self._decode(latents)

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        return self.runner(np.ascontiguousarray(latents))

    def _decode_tiled(self, latents: np.ndarray) -> np.ndarray:
        f, tile, overlap = self.downsample_factor, self.tile_size, self.tile_overlap
        n, _, h, w = latents.shape
        out = np.zeros((n, self.config["out_channels"], h * f, w * f), np.float32)
        weight = np.zeros((1, 1, h * f, w * f), np.float32)
        for top in _tile_starts(h, tile, overlap):
            for left in _tile_starts(w, tile, overlap):
                part = latents[:, :, top : top + tile, left : left + tile]
                th, tw = part.shape[2] * f, part.shape[3] * f
                ramp = np.outer(
                    _ramp(th, overlap * f, top > 0, top + tile < h),
                    _ramp(tw, overlap * f, left > 0, left + tile < w),
                )
                y, x = top * f, left * f
                out[:, :, y : y + th, x : x + tw] += self._decode(part) * ramp
                weight[:, :, y : y + th, x : x + tw] += ramp
        return out / weight


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets covering [0, length), consecutive tiles overlapping by `overlap`."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(size: int, width: int, rising: bool, falling: bool) -> np.ndarray:
    """1 inside, a linear ramp over `width` pixels on the sides that overlap a neighbour."""
    ramp = np.ones(size, np.float32)
    if width > 0:
        edge = (np.arange(width, dtype=np.float32) + 0.5) / width
        if rising:
            ramp[:width] = np.minimum(ramp[:width], edge)
        if falling:
            ramp[-width:] = np.minimum(ramp[-width:], edge[::-1])
    return ramp
