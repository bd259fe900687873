"""The autoencoder (`first_stage_model`) of an original Stable Diffusion checkpoint.

The original names levels `down.<i>` / `up.<i>` by resolution, with `up.0` the highest, while
diffusers numbers `up_blocks` in the order the decoder runs them (deepest first). Its mid-block
attention uses 1x1 convolutions where diffusers uses Linear layers: same numbers, the kernel's
two trailing 1-sized axes dropped.
"""

from __future__ import annotations

from paddiff.convert.keymap import Block, KeyMap

PREFIX = "first_stage_model."

RESNET = (("conv_shortcut", "nin_shortcut"),)
ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)
ATTENTION_LINEARS = ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")


def vae_keymap(levels: int, layers: int) -> KeyMap:
    blocks = [Block("quant_conv", "quant_conv"), Block("post_quant_conv", "post_quant_conv")]
    for side in ("encoder", "decoder"):
        blocks += [
            Block(f"{side}.conv_in", f"{side}.conv_in"),
            Block(f"{side}.conv_out", f"{side}.conv_out"),
            Block(f"{side}.conv_norm_out", f"{side}.norm_out"),
            Block(f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", RESNET),
            Block(f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", ATTENTION),
            Block(f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", RESNET),
        ]
    for level in range(levels):
        for j in range(layers):
            blocks.append(
                Block(
                    f"encoder.down_blocks.{level}.resnets.{j}",
                    f"encoder.down.{level}.block.{j}",
                    RESNET,
                )
            )
        if level < levels - 1:
            blocks.append(
                Block(
                    f"encoder.down_blocks.{level}.downsamplers.0.conv",
                    f"encoder.down.{level}.downsample.conv",
                )
            )
    for up in range(levels):
        level = levels - 1 - up
        for j in range(layers + 1):
            blocks.append(
                Block(
                    f"decoder.up_blocks.{up}.resnets.{j}", f"decoder.up.{level}.block.{j}", RESNET
                )
            )
        if up < levels - 1:
            blocks.append(
                Block(
                    f"decoder.up_blocks.{up}.upsamplers.0.conv", f"decoder.up.{level}.upsample.conv"
                )
            )
    return KeyMap(blocks)


def vae_structure(shapes: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    levels = len({k.split(".")[2] for k in shapes if k.startswith("encoder.down.")})
    layers = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down.0.block.")})
    return levels, layers


def vae_reshape(key: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The mid-block attention's 1x1 convolution kernels [c, c, 1, 1] become Linear [c, c]."""
    if ".mid_block.attentions.0." in key and key.endswith(ATTENTION_LINEARS) and len(shape) == 4:
        return shape[:2]
    return None


def vae_config(shapes: dict[str, tuple[int, ...]]) -> dict:
    levels, layers = vae_structure(shapes)
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": shapes["encoder.conv_in.weight"][1],
        "out_channels": shapes["decoder.conv_out.weight"][0],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [
            shapes[f"encoder.down.{lv}.block.0.conv1.weight"][0] for lv in range(levels)
        ],
        "layers_per_block": layers,
        "latent_channels": shapes["post_quant_conv.weight"][0],
        "norm_num_groups": 32,
        "act_fn": "silu",
        "sample_size": 512,
        "scaling_factor": 0.18215,  # SD 1.x and 2.x; not stored in the checkpoint
    }
