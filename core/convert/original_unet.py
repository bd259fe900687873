"""The UNet of an original (CompVis `ldm`) Stable Diffusion checkpoint, in diffusers' terms.

The original UNet is a flat list of `input_blocks`, a `middle_block` and `output_blocks`: input
block 0 is the first convolution; then each resolution level has `layers` blocks of
[ResBlock, SpatialTransformer] followed by one downsampling block (except the last level). The
output side mirrors it with `layers + 1` blocks per level and the upsampler inside the level's
last block. diffusers groups the same modules by level (`down_blocks.<level>.resnets.<j>`).
The attention blocks kept their inner names, so only ResBlocks need renames inside.
"""

from __future__ import annotations

from paddiff.convert.keymap import Block, KeyMap

PREFIX = "model.diffusion_model."

RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)

FIXED_BLOCKS = [
    Block("conv_in", "input_blocks.0.0"),
    Block("time_embedding.linear_1", "time_embed.0"),
    Block("time_embedding.linear_2", "time_embed.2"),
    Block("mid_block.resnets.0", "middle_block.0", RESNET),
    Block("mid_block.attentions.0", "middle_block.1"),
    Block("mid_block.resnets.1", "middle_block.2", RESNET),
    Block("conv_norm_out", "out.0"),
    Block("conv_out", "out.2"),
]


def unet_keymap(levels: int, layers: int, attention: list[bool]) -> KeyMap:
    """The table for a UNet with `levels` resolutions, `layers` ResBlocks per down level, and
    cross-attention at the levels where `attention[level]` is true."""
    blocks = list(FIXED_BLOCKS)
    index = 1
    for level in range(levels):
        for j in range(layers):
            blocks.append(
                Block(f"down_blocks.{level}.resnets.{j}", f"input_blocks.{index}.0", RESNET)
            )
            if attention[level]:
                blocks.append(
                    Block(f"down_blocks.{level}.attentions.{j}", f"input_blocks.{index}.1")
                )
            index += 1
        if level < levels - 1:
            blocks.append(
                Block(f"down_blocks.{level}.downsamplers.0.conv", f"input_blocks.{index}.0.op")
            )
            index += 1
    index = 0
    for up in range(levels):  # up level 0 is the deepest
        has_attention = attention[levels - 1 - up]
        for j in range(layers + 1):
            blocks.append(Block(f"up_blocks.{up}.resnets.{j}", f"output_blocks.{index}.0", RESNET))
            if has_attention:
                blocks.append(Block(f"up_blocks.{up}.attentions.{j}", f"output_blocks.{index}.1"))
            if j == layers and up < levels - 1:
                slot = 2 if has_attention else 1
                blocks.append(
                    Block(f"up_blocks.{up}.upsamplers.0.conv", f"output_blocks.{index}.{slot}.conv")
                )
            index += 1
    return KeyMap(blocks)


def unet_structure(shapes: dict[str, tuple[int, ...]]) -> tuple[int, int, list[bool]]:
    """(levels, layers per level, attention per level), read from the original keys' names."""
    blocks = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("input_blocks.")})
    downsamplers = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in shapes]
    levels = len(downsamplers) + 1
    layers = (downsamplers[0] - 1) if downsamplers else len(blocks) - 1
    attention = [
        f"input_blocks.{1 + level * (layers + 1)}.1.proj_in.weight" in shapes
        for level in range(levels)
    ]
    return levels, layers, attention


def encoder_config(shapes: dict[str, tuple[int, ...]]) -> dict:
    """The config fields the original keys' shapes give for the UNet's encoder half (input
    blocks and middle block): shared with control nets, which copy that half.

    The number of attention heads is not visible in the shapes: SD 2.x (1024-wide OpenCLIP
    context) uses 64-channel heads, SD 1.x uses 8 heads at every level.
    """
    levels, layers, attention = unet_structure(shapes)
    channels = [
        shapes[f"input_blocks.{1 + lv * (layers + 1)}.0.out_layers.3.weight"][0]
        for lv in range(levels)
    ]
    first_attention = next((k for k in shapes if k.endswith("attn2.to_k.weight")), None)
    context = shapes[first_attention][1] if first_attention else None
    proj_in = next((shapes[k] for k in shapes if k.endswith("proj_in.weight")), (0, 0))
    depth = len(
        {
            k.split("transformer_blocks.")[1].split(".")[0]
            for k in shapes
            if k.startswith("middle_block.1.transformer_blocks.")
        }
    )
    return {
        "in_channels": shapes["input_blocks.0.0.weight"][1],
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "cross_attention_dim": context,
        "attention_head_dim": [c // 64 for c in channels] if context == 1024 else 8,
        "use_linear_projection": len(proj_in) == 2,  # SD 2.x: Linear; SD 1.x: 1x1 convolution
        "transformer_layers_per_block": max(depth, 1),
    }


def unet_config(shapes: dict[str, tuple[int, ...]]) -> dict:
    """diffusers' UNet2DConditionModel config for the original keys' shapes.

    The number of attention heads is not visible in the shapes: SD 2.x (1024-wide OpenCLIP
    context) uses 64-channel heads, SD 1.x uses 8 heads at every level. Other models need an
    override of `attention_head_dim`.
    """
    encoder = encoder_config(shapes)
    context, attention = encoder["cross_attention_dim"], encoder["down_block_types"]
    return {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 96 if context == 1024 else 64,
        "out_channels": shapes["out.2.weight"][0],
        **encoder,
        "up_block_types": [t.replace("Down", "Up") for t in reversed(attention)],
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }
