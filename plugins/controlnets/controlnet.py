"""ControlNetModel: diffusers' control network for SD 1.x / 2.x UNets, in Paddle.

A trainable copy of the UNet's encoder (conv_in, down blocks, middle block) that also reads a
control image through a small convolutional embedding, and returns one residual per UNet skip
connection plus one for the middle block, each through a zero-initialised 1x1 convolution.
State-dict keys are diffusers' (`controlnet_cond_embedding.blocks.0.weight`, ...).
"""

from __future__ import annotations

import numpy as np
import paddle
from paddiff.control.loading import architecture_of
from paddiff.execution import InputSpec, Network
from paddiff.interfaces import ControlNet
from paddiff.plugins.denoisers.unet import DEFAULTS as UNET_DEFAULTS
from paddiff.plugins.denoisers.unet import DOWN_TYPES, check_supported, per_block
from paddiff.plugins.denoisers.unet_blocks import BlockSettings, DownBlock, MidBlock
from paddiff.plugins.nn.component_io import load_component_weights, read_config, save_component
from paddiff.plugins.nn.layers import TimestepEmbedding, silu, timestep_embedding
from paddiff.plugins.nn.state_dict import export_state_dict, load_state_dict_into
from paddle import nn

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# The encoder's fields are the UNet's (same defaults: diffusers' SD values); then its own.
ENCODER_FIELDS = (
    "in_channels",
    "flip_sin_to_cos",
    "freq_shift",
    "down_block_types",
    "mid_block_type",
    "block_out_channels",
    "layers_per_block",
    "downsample_padding",
    "mid_block_scale_factor",
    "norm_num_groups",
    "norm_eps",
    "cross_attention_dim",
    "transformer_layers_per_block",
    "attention_head_dim",
    "num_attention_heads",
    "use_linear_projection",
    "upcast_attention",
)
DEFAULTS = {
    **{key: UNET_DEFAULTS[key] for key in ENCODER_FIELDS},
    "conditioning_channels": 3,
    "controlnet_conditioning_channel_order": "rgb",
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "global_pool_conditions": False,
}


class ConditioningEmbedding(nn.Layer):
    """The control image (pixels) to the latent grid: conv, then pairs of (conv, stride-2 conv)
    with SiLU after each, then a zero-initialised conv to the UNet's first width."""

    def __init__(self, out_channels: int, in_channels: int, widths: list[int]):
        super().__init__()
        self.conv_in = nn.Conv2D(in_channels, widths[0], 3, padding=1)
        blocks = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            blocks.append(nn.Conv2D(w_in, w_in, 3, padding=1))
            blocks.append(nn.Conv2D(w_in, w_out, 3, padding=1, stride=2))
        self.blocks = nn.LayerList(blocks)
        self.conv_out = nn.Conv2D(widths[-1], out_channels, 3, padding=1)

    def forward(self, image):
        x = silu(self.conv_in(image))
        for block in self.blocks:
            x = silu(block(x))
        return self.conv_out(x)


class ControlNetNetwork(nn.Layer):
    """The Paddle network; attribute names are diffusers' module names."""

    def __init__(self, config: dict):
        super().__init__()
        unet_view = {**config, "up_block_types": ["UpBlock2D"] * len(config["down_block_types"])}
        check_supported(unet_view)  # the same encoder variants the UNet supports
        problems = []
        if config["controlnet_conditioning_channel_order"] not in ("rgb", "bgr"):
            problems.append(
                "controlnet_conditioning_channel_order="
                f"{config['controlnet_conditioning_channel_order']!r} (supported: 'rgb', 'bgr')"
            )
        if config["global_pool_conditions"]:
            problems.append("global_pool_conditions=True (shuffle-style control nets)")
        if problems:
            raise ValueError("unsupported ControlNetModel config: " + "; ".join(problems))
        self.config = config
        channels = list(config["block_out_channels"])
        n = len(channels)
        heads = per_block(
            config["num_attention_heads"] or config["attention_head_dim"], n, "attention heads"
        )
        depth = per_block(config["transformer_layers_per_block"], n, "transformer_layers_per_block")
        self.time_channels = channels[0]
        temb = channels[0] * 4
        s = BlockSettings(
            temb,
            config["norm_num_groups"],
            config["norm_eps"],
            config["cross_attention_dim"],
            config["use_linear_projection"],
        )
        self.conv_in = nn.Conv2D(config["in_channels"], channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.controlnet_cond_embedding = ConditioningEmbedding(
            channels[0],
            config["conditioning_channels"],
            list(config["conditioning_embedding_out_channels"]),
        )
        down, zero_convs = [], [nn.Conv2D(channels[0], channels[0], 1)]
        for i, block_type in enumerate(config["down_block_types"]):
            has_attention = DOWN_TYPES[block_type]
            last = i == n - 1
            down.append(
                DownBlock(
                    s,
                    channels[max(i - 1, 0)],
                    channels[i],
                    config["layers_per_block"],
                    heads[i] if has_attention else None,
                    depth[i],
                    downsample=not last,
                    pad=config["downsample_padding"],
                )
            )
            skips = config["layers_per_block"] + (0 if last else 1)
            zero_convs.extend(nn.Conv2D(channels[i], channels[i], 1) for _ in range(skips))
        self.down_blocks = nn.LayerList(down)
        self.controlnet_down_blocks = nn.LayerList(zero_convs)
        self.mid_block = MidBlock(
            s, channels[-1], heads[-1], depth[-1], config["mid_block_scale_factor"]
        )
        self.controlnet_mid_block = nn.Conv2D(channels[-1], channels[-1], 1)

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond):
        """The unscaled residuals: [down_0, ..., down_k, mid]."""
        if self.config["controlnet_conditioning_channel_order"] == "bgr":
            controlnet_cond = paddle.flip(controlnet_cond, axis=[1])
        t = timestep_embedding(
            timestep, self.time_channels, self.config["flip_sin_to_cos"], self.config["freq_shift"]
        )
        temb = self.time_embedding(t)
        x = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, encoder_hidden_states)
            skips.extend(block_skips)
        x = self.mid_block(x, temb, encoder_hidden_states)
        # no strict=: paddle.jit.to_static's zip does not take it (same lengths by construction)
        pairs = zip(self.controlnet_down_blocks, skips)  # noqa: B905
        residuals = [conv(skip) for conv, skip in pairs]
        return [*residuals, self.controlnet_mid_block(x)]


class ControlNetModel(ControlNet):
    """Control-net plugin for diffusers' ControlNetModel folders (and converted single files)."""

    DEFAULTS = DEFAULTS  # what config.json may omit (read by paddiff.control.loading)

    def __init__(self, config: dict):
        self.config = {**DEFAULTS, **config}
        self.net = ControlNetNetwork(self.config)
        self.net.eval()
        inputs = [
            InputSpec("sample", (None, self.config["in_channels"], None, None)),
            InputSpec("timestep", (None,)),
            InputSpec("encoder_hidden_states", (None, None, self.config["cross_attention_dim"])),
            InputSpec("controlnet_cond", (None, self.config["conditioning_channels"], None, None)),
        ]
        self.runner = Network("controlnet", self.net, inputs, self.config)
        self.base_architecture = architecture_of(self.config)
        self.conditioning_channels = self.config["conditioning_channels"]

    @classmethod
    def from_pretrained(cls, path, variant: str | None = None, **options):
        state, source = load_component_weights(path, variant)
        return cls.from_state_dict(read_config(path, DEFAULTS), state, source)

    @classmethod
    def from_state_dict(cls, config, state, source="state dict", **options):
        with paddle.LazyGuard():  # no random init: strict loading sets every parameter
            model = cls({**DEFAULTS, **config})
        load_state_dict_into(model.net, state, source)
        return model

    def save_pretrained(self, folder) -> None:
        config = {"_class_name": "ControlNetModel", **self.config}
        save_component(folder, config, export_state_dict(self.net), WEIGHTS_NAME)

    def networks(self) -> list[Network]:
        return [self.runner]

    def __call__(self, latents, timestep, conditioning, control_image):
        latents = np.asarray(latents, dtype=np.float32)
        batch = latents.shape[0]
        control_image = np.asarray(control_image, dtype=np.float32)
        if control_image.ndim != 4 or control_image.shape[1] != self.conditioning_channels:
            raise ValueError(
                f"control image of shape {control_image.shape}: this control net expects "
                f"(batch, {self.conditioning_channels}, height, width)"
            )
        if control_image.shape[0] != batch:
            raise ValueError(f"{control_image.shape[0]} control images for a batch of {batch}")
        timesteps = np.asarray(timestep, np.float32).reshape(-1)
        timesteps = np.ascontiguousarray(np.broadcast_to(timesteps, (batch,)))
        outputs = self.runner(
            latents, timesteps, np.asarray(conditioning, np.float32), control_image
        )
        return list(outputs[:-1]), outputs[-1]
