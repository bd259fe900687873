"""Original ControlNet checkpoints (lllyasviel's `control_v11p_sd15_*.pth` layout) in
diffusers' terms.

The file holds the control copy of the UNet encoder under `control_model.`: `input_blocks`,
`middle_block` and `time_embed` named as in the original UNet (so the UNet converter's table
renames them), plus three parts of its own:

    input_hint_block.<2i>   the hint convolutions (SiLU between)  -> controlnet_cond_embedding
    zero_convs.<i>.0        one 1x1 convolution per skip state    -> controlnet_down_blocks.<i>
    middle_block_out.0      the middle block's 1x1 convolution    -> controlnet_mid_block
"""

from __future__ import annotations

from paddiff.control.loading import ORIGINAL_PREFIX
from paddiff.convert import original_unet
from paddiff.convert.keymap import rename_state
from paddiff.weights import StateDict, WeightsFormatError


class ControlKeyMap:
    """Original control-net key (without the prefix) -> diffusers key, None when unknown."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.unet = original_unet.unet_keymap(*original_unet.unet_structure(shapes))
        self.hint = sorted(
            {int(k.split(".")[1]) for k in shapes if k.startswith("input_hint_block.")}
        )
        self.hint_last = max(self.hint) if self.hint else 0

    def to_diffusers(self, key: str) -> str | None:
        parts = key.split(".")
        if parts[0] == "zero_convs" and len(parts) == 4:
            return f"controlnet_down_blocks.{parts[1]}.{parts[3]}"
        if parts[0] == "middle_block_out" and len(parts) == 3:
            return f"controlnet_mid_block.{parts[2]}"
        if parts[0] == "input_hint_block" and len(parts) == 3:
            index = int(parts[1])
            if index == 0:
                name = "conv_in"
            elif index == self.hint_last:
                name = "conv_out"
            else:
                name = f"blocks.{index // 2 - 1}"
            return f"controlnet_cond_embedding.{name}.{parts[2]}"
        new = self.unet.to_diffusers(key)
        if new is None or new.startswith(("up_blocks.", "conv_out", "conv_norm_out")):
            return None  # a full UNet's decoder has no place in a control net
        return new


def is_original_controlnet(state: StateDict) -> bool:
    return any(k.startswith(ORIGINAL_PREFIX + "input_hint_block.") for k in state)


def convert_control_checkpoint(state: StateDict, hidden: dict) -> tuple[dict, StateDict]:
    """(diffusers ControlNetModel config, weights under diffusers keys), lazily renamed.
    `hidden`: config values the shapes cannot show."""
    source = state.files[0] if state.files else "state dict"
    if not is_original_controlnet(state):
        raise WeightsFormatError(
            f"{source}: not a control net (no {ORIGINAL_PREFIX}input_hint_block.* keys)"
        )
    shapes = {
        k[len(ORIGINAL_PREFIX) :]: state.shape(k) for k in state if k.startswith(ORIGINAL_PREFIX)
    }
    keymap = ControlKeyMap(shapes)
    converted = rename_state(state, ORIGINAL_PREFIX, keymap, "control net")
    return control_config(shapes, keymap.hint, hidden), converted


def control_config(shapes: dict, hint: list[int], hidden: dict) -> dict:
    """diffusers' ControlNetModel config: the UNet encoder's fields read as for a UNet, the hint
    convolutions' widths, and `hidden` (values the shapes cannot show) over both."""
    # hint convolutions: 0, then (same width, stride-2 wider) pairs, then the zero conv
    widths = [shapes[f"input_hint_block.{hint[0]}.weight"][0]] + [
        shapes[f"input_hint_block.{i}.weight"][0] for i in hint[2:-1:2]
    ]
    return {
        "_class_name": "ControlNetModel",
        **original_unet.encoder_config(shapes),
        "conditioning_channels": shapes[f"input_hint_block.{hint[0]}.weight"][1],
        "conditioning_embedding_out_channels": widths,
        **hidden,
    }
