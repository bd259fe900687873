"""UNet2DConditionModel: the Stable Diffusion 1.x / 2.x denoiser, driven by diffusers' config.json.

`UNet2DConditionModel.net` is a `paddle.nn.Layer` whose state-dict keys are diffusers' keys
(Linear weights transposed), so training and static export use it directly; the class itself is
the NumPy-in, NumPy-out `Denoiser` the pipeline calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
from paddiff.execution import InputSpec, Network
from paddiff.interfaces import Denoiser
from paddiff.plugins.denoisers.unet_blocks import BlockSettings, DownBlock, MidBlock, UpBlock
from paddiff.plugins.nn.component_io import load_component_weights, read_config, save_component
from paddiff.plugins.nn.layers import TimestepEmbedding, silu, timestep_embedding
from paddiff.plugins.nn.state_dict import export_state_dict, load_state_dict_into
from paddle import nn

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# diffusers' defaults for the fields this network reads (they describe SD 1.x, except
# cross_attention_dim). Every SD config.json sets the important ones explicitly anyway.
DEFAULTS = {
    "in_channels": 4,  # 9 for inpainting: latents + mask + masked-image latents
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,  # timestep embedding order: [cos, sin] when True
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1.0,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1280,
    "transformer_layers_per_block": 1,
    # Despite its name, diffusers uses this as the number of heads when num_attention_heads is
    # unset (a historical naming slip that every SD config depends on).
    "attention_head_dim": 8,
    "num_attention_heads": None,
    "use_linear_projection": False,  # SD 2.x: Linear instead of 1x1-conv projections
    "upcast_attention": False,  # SD 2.1: attention in fp32; a no-op here, everything is fp32
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "time_embedding_dim": None,
    # SDXL's "text_time" added embedding: the pooled text embedding and the sinusoidal embedding
    # of each micro-conditioning number (sizes, crop, aesthetic score), through one more MLP.
    "addition_embed_type": None,
    "addition_time_embed_dim": None,  # width of each number's sinusoidal embedding (256)
    "projection_class_embeddings_input_dim": None,  # pooled width + numbers x that width
}

# Config values other than these select architecture variants (SDXL's added embeddings, class
# conditioning, ...) that this network does not implement; loading such a model must fail loudly.
SUPPORTED_VALUES = {
    "act_fn": ("silu",),
    "class_embed_type": (None,),
    "addition_embed_type": (None, "text_time"),
    "time_cond_proj_dim": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "dual_cross_attention": (False,),
    "only_cross_attention": (False,),  # also accepted as one False per block, see below
    "num_class_embeds": (None,),
    "resnet_time_scale_shift": ("default",),
    "time_embedding_type": ("positional",),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "attention_type": ("default",),
    "cross_attention_norm": (None,),
    "resnet_skip_time_act": (False,),
    "resnet_out_scale_factor": (1.0,),
    "mid_block_type": ("UNetMidBlock2DCrossAttn",),
    "reverse_transformer_layers_per_block": (None,),
}
DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}  # name -> has attention
UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}


def check_supported(config: dict) -> None:
    def value(key):
        v = config[key]  # per-block lists of one supported value count as that value
        return v[0] if isinstance(v, list) and v and all(x == v[0] for x in v) else v

    problems = [
        f"{key}={config[key]!r} (supported: {', '.join(map(repr, allowed))})"
        for key, allowed in SUPPORTED_VALUES.items()
        if key in config and value(key) not in allowed
    ]
    if isinstance(config["cross_attention_dim"], (list, tuple)):
        problems.append(f"cross_attention_dim={config['cross_attention_dim']!r} (one int only)")
    for key, known in (("down_block_types", DOWN_TYPES), ("up_block_types", UP_TYPES)):
        unknown = [t for t in config[key] if t not in known]
        if unknown:
            problems.append(f"{key} contains {unknown} (supported: {', '.join(known)})")
    if config.get("addition_embed_type") == "text_time":
        for key in ("addition_time_embed_dim", "projection_class_embeddings_input_dim"):
            if not config.get(key):
                problems.append(f"addition_embed_type='text_time' needs {key}")
    if problems:
        raise ValueError("unsupported UNet2DConditionModel config: " + "; ".join(problems))


def per_block(value, blocks: int, name: str) -> list:
    """An int applies to every block; a list gives one value per block."""
    if isinstance(value, (list, tuple)):
        if len(value) != blocks:
            raise ValueError(f"{name} has {len(value)} entries for {blocks} blocks")
        return list(value)
    return [value] * blocks


class UNetNetwork(nn.Layer):
    """The Paddle network; attribute names are diffusers' module names."""

    def __init__(self, config: dict):
        super().__init__()
        check_supported(config)
        self.config = config
        channels = list(config["block_out_channels"])
        n = len(channels)
        heads = per_block(
            config["num_attention_heads"] or config["attention_head_dim"], n, "attention heads"
        )
        depth = per_block(config["transformer_layers_per_block"], n, "transformer_layers_per_block")
        self.time_channels = channels[0]
        temb = config["time_embedding_dim"] or channels[0] * 4
        s = BlockSettings(
            temb,
            config["norm_num_groups"],
            config["norm_eps"],
            config["cross_attention_dim"],
            config["use_linear_projection"],
        )
        k_in, k_out = config["conv_in_kernel"], config["conv_out_kernel"]
        self.conv_in = nn.Conv2D(config["in_channels"], channels[0], k_in, padding=(k_in - 1) // 2)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.text_time = config["addition_embed_type"] == "text_time"
        if self.text_time:
            self.add_embedding = TimestepEmbedding(
                config["projection_class_embeddings_input_dim"], temb
            )

        down = []
        for i, block_type in enumerate(config["down_block_types"]):
            in_ch = channels[max(i - 1, 0)]
            has_attention = DOWN_TYPES[block_type]
            down.append(
                DownBlock(
                    s,
                    in_ch,
                    channels[i],
                    config["layers_per_block"],
                    heads[i] if has_attention else None,
                    depth[i],
                    downsample=i < n - 1,
                    pad=config["downsample_padding"],
                )
            )
        self.down_blocks = nn.LayerList(down)
        self.mid_block = MidBlock(
            s, channels[-1], heads[-1], depth[-1], config["mid_block_scale_factor"]
        )

        up = []
        rev_channels, rev_heads, rev_depth = channels[::-1], heads[::-1], depth[::-1]
        for i, block_type in enumerate(config["up_block_types"]):
            has_attention = UP_TYPES[block_type]
            up.append(
                UpBlock(
                    s,
                    in_ch=rev_channels[min(i + 1, n - 1)],
                    prev_ch=rev_channels[max(i - 1, 0)],
                    out_ch=rev_channels[i],
                    num_layers=config["layers_per_block"] + 1,
                    heads=rev_heads[i] if has_attention else None,
                    transformer_layers=rev_depth[i],
                    upsample=i < n - 1,
                )
            )
        self.up_blocks = nn.LayerList(up)
        self.conv_norm_out = nn.GroupNorm(
            config["norm_num_groups"], channels[0], epsilon=config["norm_eps"]
        )
        self.conv_out = nn.Conv2D(
            channels[0], config["out_channels"], k_out, padding=(k_out - 1) // 2
        )

    def forward(
        self,
        sample,
        timestep,
        encoder_hidden_states,
        extra_0=None,
        extra_1=None,
        extra_2=None,
        extra_3=None,
        extra_4=None,
        extra_5=None,
        extra_6=None,
        extra_7=None,
        extra_8=None,
        extra_9=None,
        extra_10=None,
        extra_11=None,
        extra_12=None,
        extra_13=None,
        extra_14=None,
        extra_15=None,
        extra_16=None,
        extra_17=None,
        extra_18=None,
        extra_19=None,
    ):
        """sample (B, C, H, W), timestep (B,) float, encoder_hidden_states (B, L, D); then, for
        SDXL ("text_time"), text_embeds (B, pooled width) and time_ids (B, numbers); then, in
        the variant that takes a control net's residuals, one per skip connection and the
        middle block's last (`residual_shapes`). All positional: this is what is exported
        (Paddle's to_static traces no *args, hence the spelled-out extra_N)."""
        more = [
            value
            for value in (
                extra_0,
                extra_1,
                extra_2,
                extra_3,
                extra_4,
                extra_5,
                extra_6,
                extra_7,
                extra_8,
                extra_9,
                extra_10,
                extra_11,
                extra_12,
                extra_13,
                extra_14,
                extra_15,
                extra_16,
                extra_17,
                extra_18,
                extra_19,
            )
            if value is not None
        ]
        added, residuals = (more[:2], more[2:]) if self.text_time else ([None, None], more)
        downs, mid = (residuals[:-1], residuals[-1]) if residuals else (None, None)
        return self.run(sample, timestep, encoder_hidden_states, *added, downs, mid)

    def residual_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """(channels, height, width) of each residual a control net hands this UNet for latents
        of height x width: the skip connections in the order the down path makes them, then the
        middle block's output."""
        channels = self.config["block_out_channels"]
        shapes = [(channels[0], height, width)]
        for index, block in enumerate(self.down_blocks):
            shapes += [(channels[index], height, width)] * len(block.resnets)
            if block.downsamplers is not None:
                pad = self.config["downsample_padding"]
                # a 3x3 stride-2 convolution; padding 0 pads one pixel right and bottom
                height = (height + (2 * pad if pad else 1) - 3) // 2 + 1
                width = (width + (2 * pad if pad else 1) - 3) // 2 + 1
                shapes.append((channels[index], height, width))
        return shapes + [(channels[-1], height, width)]

    def run(
        self,
        sample,
        timestep,
        encoder_hidden_states,
        text_embeds=None,
        time_ids=None,
        down_residuals=None,
        mid_residual=None,
    ):
        """`forward`, optionally with a control net's residuals: `down_residuals` are added to
        the skip states (one per skip, in the order the down path makes them) and
        `mid_residual` to the middle block's output, as diffusers'
        `down_block_additional_residuals` / `mid_block_additional_residual`."""
        if self.config["center_input_sample"]:
            sample = 2 * sample - 1.0
        flip, shift = self.config["flip_sin_to_cos"], self.config["freq_shift"]
        temb = self.time_embedding(timestep_embedding(timestep, self.time_channels, flip, shift))
        if self.text_time:
            width = self.config["addition_time_embed_dim"]
            numbers = timestep_embedding(time_ids.reshape([-1]), width, flip, shift)
            numbers = numbers.reshape([time_ids.shape[0], time_ids.shape[1] * width])
            temb = temb + self.add_embedding(paddle.concat([text_embeds, numbers], axis=1))
        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, encoder_hidden_states)
            skips.extend(block_skips)
        if down_residuals is not None:
            if len(down_residuals) != len(skips):
                raise ValueError(
                    f"{len(down_residuals)} down-block residuals for a UNet with {len(skips)} "
                    "skip connections: the control net does not fit this UNet"
                )
            # (no zip(strict=...) here: Paddle's to_static does not take it; lengths checked)
            skips = [skips[i] + down_residuals[i] for i in range(len(skips))]
        x = self.mid_block(x, temb, encoder_hidden_states)
        if mid_residual is not None:
            x = x + mid_residual
        for block in self.up_blocks:
            consumed = len(block.resnets)
            block_skips, skips = skips[-consumed:], skips[:-consumed]
            # Upsample to the size of the skip the next block takes first: exactly 2x unless an
            # odd size was rounded up on the way down.
            next_size = skips[-1].shape[2:] if skips else None
            x = block(x, block_skips, temb, encoder_hidden_states, next_size)
        return self.conv_out(silu(self.conv_norm_out(x)))


class UNet2DConditionModel(Denoiser):
    """Denoiser plugin for diffusers' `unet/` folders (SD 1.x, 2.x, inpainting)."""

    def __init__(self, config: dict, prediction_type: str = "epsilon"):
        self.config = {**DEFAULTS, **config}
        self.net = UNetNetwork(self.config)
        self.net.eval()
        # Batch and latent size stay dynamic; paddiff.execution chooses how the network runs.
        inputs = [
            InputSpec("sample", (None, self.config["in_channels"], None, None)),
            InputSpec("timestep", (None,)),
            InputSpec("encoder_hidden_states", (None, None, self.config["cross_attention_dim"])),
        ]
        self.added_conditions = self._added_condition_widths()
        inputs += [InputSpec(name, (None, width)) for name, width in self.added_conditions.items()]
        self.runner = Network("unet", self.net, inputs, self.config)
        self.takes_residuals = False  # a control net's: see __call__
        self.in_channels = self.config["in_channels"]
        self.out_channels = self.config["out_channels"]
        self.prediction_type = prediction_type

    @classmethod
    def from_pretrained(
        cls, path, prediction_type: str | None = None, variant: str | None = None, **options
    ):
        """Load `path` (a `unet/` folder). The prediction type lives in the sibling
        `scheduler/scheduler_config.json` in diffusers folders; pass it to override."""
        state, source = load_component_weights(path, variant)
        prediction_type = prediction_type or _prediction_type_next_to(path)
        return cls.from_state_dict(read_config(path, DEFAULTS), state, source, prediction_type)

    @classmethod
    def from_state_dict(
        cls, config, state, source="state dict", prediction_type="epsilon", **options
    ):
        """Build from a config dict and a state dict (diffusers keys), e.g. a converted
        single-file checkpoint; `source` is named in loading errors."""
        with paddle.LazyGuard():  # no random init: strict loading sets every parameter
            model = cls({**DEFAULTS, **config}, prediction_type)
        load_state_dict_into(model.net, state, source)
        return model

    def save_pretrained(self, folder) -> None:
        config = {"_class_name": "UNet2DConditionModel", **self.config}
        save_component(folder, config, export_state_dict(self.net), WEIGHTS_NAME)

    def networks(self) -> list[Network]:
        """What runs this component (paddiff.execution decides how)."""
        return [self.runner]

    def _added_condition_widths(self) -> dict:
        """SDXL's extra inputs: {"text_embeds": None, "time_ids": None} (widths stay dynamic:
        the config gives only their total, pooled width + numbers x addition_time_embed_dim;
        SDXL base has 6 numbers, the refiner 5)."""
        if self.config["addition_embed_type"] != "text_time":
            return {}
        return {"text_embeds": None, "time_ids": None}

    def __call__(
        self,
        latents,
        timestep,
        conditioning,
        added_cond=None,
        down_block_additional_residuals=None,
        mid_block_additional_residual=None,
    ):
        """The model output. `added_cond` (SDXL, diffusers' added_cond_kwargs):
        {"text_embeds": (B, pooled), "time_ids": (B, numbers)}; with a control net's residuals
        (diffusers' argument names) the UNet adds them to its skip connections and middle
        block."""
        latents = np.asarray(latents, dtype=np.float32)
        conditioning = np.asarray(conditioning, dtype=np.float32)
        timesteps = self._check_inputs(latents, np.asarray(timestep, np.float32), conditioning)
        inputs = (latents, timesteps, conditioning, *self._added(added_cond, latents))
        downs, mid = down_block_additional_residuals, mid_block_additional_residual
        if (downs is not None or mid is not None) and not self.takes_residuals:
            # From the first control call on, the UNet runs the variant of its network (and of
            # its exported program) that takes residuals, with zeros when a call has none (a
            # step outside the control's guidance window): one program, one copy of weights.
            self.runner.set_inputs([*self.runner.inputs, *self._residual_inputs()])
            self.takes_residuals = True
        if self.takes_residuals:
            inputs = (*inputs, *self._residual_arrays(latents, downs, mid))
        return self.runner(*inputs)

    def _residual_inputs(self) -> list[InputSpec]:
        shapes = self.net.residual_shapes(8, 8)  # only the channels are used
        downs = [
            InputSpec(f"down_residual_{i}", (None, channels, None, None))
            for i, (channels, _, _) in enumerate(shapes[:-1])
        ]
        return [*downs, InputSpec("mid_residual", (None, shapes[-1][0], None, None))]

    def _residual_arrays(self, latents, downs, mid) -> list[np.ndarray]:
        """The control residuals as the network takes them: checked against the skip
        connections of these latents, zeros where a call has none."""
        batch, _, height, width = latents.shape
        shapes = [(batch, *shape) for shape in self.net.residual_shapes(height, width)]
        if downs is not None and len(downs) != len(shapes) - 1:
            raise ValueError(
                f"{len(downs)} down-block residuals for a UNet with {len(shapes) - 1} skip "
                "connections: the control net does not fit this UNet"
            )
        given = [*(downs if downs is not None else [None] * (len(shapes) - 1)), mid]
        arrays = []
        for index, (value, shape) in enumerate(zip(given, shapes, strict=True)):
            if value is None:
                arrays.append(np.zeros(shape, np.float32))
                continue
            value = np.ascontiguousarray(value, dtype=np.float32)
            if value.shape != shape:
                where = "mid-block" if index == len(shapes) - 1 else f"down-block {index}"
                raise ValueError(
                    f"{where} residual of shape {value.shape}; this UNet's skip connection for "
                    f"latents {tuple(latents.shape)} has shape {shape}"
                )
            arrays.append(value)
        return arrays

    def _added(self, added_cond, latents) -> list:
        if not self.added_conditions:
            if added_cond:
                raise ValueError("this UNet takes no added conditions (text_embeds, time_ids)")
            return []
        if not added_cond:
            raise ValueError(
                "this SDXL-type UNet needs added_cond={'text_embeds': ..., 'time_ids': ...}"
            )
        arrays = [np.asarray(added_cond[name], np.float32) for name in ("text_embeds", "time_ids")]
        total = int(self.config["projection_class_embeddings_input_dim"])
        width = int(self.config["addition_time_embed_dim"])
        pooled, numbers = arrays
        if (
            pooled.ndim != 2
            or numbers.ndim != 2
            or len(pooled) != len(latents)
            or len(numbers) != len(latents)
            or pooled.shape[1] + numbers.shape[1] * width != total
        ):
            raise ValueError(
                f"added conditions text_embeds {pooled.shape} and time_ids {numbers.shape} do "
                f"not fit this UNet: it expects {len(latents)} rows and text_embeds width + "
                f"time_ids count x {width} = {total} (projection_class_embeddings_input_dim)"
            )
        return arrays

    def _check_inputs(self, latents, timestep, conditioning) -> np.ndarray:
        """Shape errors from deep inside the network are cryptic; name the mismatch here.
        Returns one timestep per batch entry."""
        batch = latents.shape[0]
        if latents.ndim != 4 or latents.shape[1] != self.in_channels:
            raise ValueError(
                f"latents of shape {latents.shape} have {latents.shape[1]} channels; this UNet "
                f"expects 4-D latents with {self.in_channels} channels"
            )
        if conditioning.ndim != 3 or conditioning.shape[0] != batch:
            raise ValueError(
                f"conditioning batch {conditioning.shape[0]} (shape {conditioning.shape}) does "
                f"not match latents batch {batch}"
            )
        if timestep.ndim > 1 or timestep.size not in (1, batch):
            raise ValueError(f"{timestep.size} timesteps for a batch of {batch}")
        return np.ascontiguousarray(np.broadcast_to(timestep.reshape(-1), (batch,)))


def _prediction_type_next_to(unet_folder) -> str:
    scheduler_config = Path(unet_folder).parent / "scheduler" / "scheduler_config.json"
    if scheduler_config.is_file():
        config = json.loads(scheduler_config.read_text(encoding="utf-8"))
        return config.get("prediction_type", "epsilon")
    return "epsilon"
