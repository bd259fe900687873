"""Loading control nets: diffusers folders and original single files, and the base check."""

from __future__ import annotations

from pathlib import Path

from paddiff import registry

# Config values a single file's shapes cannot show; taken from the UNet the control net is for
# (a control net is a copy of its UNet's encoder), else SD's values.
HIDDEN_KEYS = ("attention_head_dim", "num_attention_heads")  # default: SD 1.x / 2.x rule
HIDDEN_CONFIG = {
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "upcast_attention": False,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
}
ORIGINAL_PREFIX = "control_model."


class ArchitectureMismatchError(ValueError):
    """A control net made for another base model than the pipeline's."""


def architecture_of(config: dict) -> str:
    """What a control net and its UNet must share (text-context width, encoder layout), as
    text; equal strings fit together."""
    return (
        f"cross_attention_dim {config.get('cross_attention_dim')}, block_out_channels "
        f"{list(config.get('block_out_channels', []))}, layers_per_block "
        f"{config.get('layers_per_block')}, down blocks {list(config.get('down_block_types', []))}"
    )


def check_fits(controlnet, denoiser, name: str = "control net") -> None:
    """Refuse a control net made for another base model, naming both architectures."""
    config = getattr(denoiser, "config", None)
    if config is None:
        return  # a denoiser plugin without a config: the residual count check is the guard
    mine, theirs = controlnet.base_architecture, architecture_of(config)
    if mine != theirs:
        raise ArchitectureMismatchError(
            f"{name} was made for another base model: control net has {mine}; this model's "
            f"UNet has {theirs}"
        )


def load_controlnet(path, *, like: dict | None = None, variant: str | None = None):
    """A control net from a diffusers folder (config.json + weights, `variant="fp16"` for
    `*.fp16.*` files) or an original single file (.safetensors, .pth, .ckpt, .bin with
    `control_model.*` keys, read through the restricted unpickler).

    like: the config of the UNet it is for. A control net of another architecture is then
          refused (ArchitectureMismatchError) before its weights are read; and it gives what a
          single file's shapes do not show (attention heads, norm groups); without it, SD's
          values.
    The net gets `name` (the file or folder name) and `short_hash` (8 hex digits of the weights
    file's SHA-256, as A1111 shows control models) for the PNG parameters.
    """
    path = Path(path)
    if path.is_dir():
        net, weights = _from_folder(path, like, variant)
    elif path.is_file():
        if variant is not None:
            raise ValueError(f"{path}: variant= applies to control-net folders, not single files")
        net, weights = _from_single_file(path, like), path
    else:
        raise FileNotFoundError(f"control net not found: {path}")
    from paddiff.lora.files import file_hash

    net.name = path.stem if path.is_file() else path.name
    net.short_hash = file_hash(weights)[:8]
    return net


def _from_folder(path: Path, like, variant):
    import json

    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a control-net folder")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    cls = registry.get("controlnets", config.get("_class_name", "ControlNetModel"))
    _check_config(cls, config, like, path)
    from paddiff.weights import find_component_weights

    net = cls.from_pretrained(path, variant=variant)
    return net, find_component_weights(path, variant)[0]


def _from_single_file(path: Path, like):
    from paddiff.control.single_file import convert_control_checkpoint
    from paddiff.weights import load_state_dict

    state = load_state_dict(path)  # pickles go through paddiff.safe_pickle
    config, converted = convert_control_checkpoint(state, {**HIDDEN_CONFIG, **_hidden(like)})
    cls = registry.get("controlnets", "ControlNetModel")
    _check_config(cls, config, like, path)
    return cls.from_state_dict(config, converted, str(path))


def _check_config(cls, config: dict, like: dict | None, path) -> None:
    """Refuse before any weight is read; the class's `DEFAULTS` fill what config.json omits."""
    if like is None:
        return
    defaults = getattr(cls, "DEFAULTS", {})
    mine, theirs = architecture_of({**defaults, **config}), architecture_of(like)
    if mine != theirs:
        raise ArchitectureMismatchError(
            f"control net {path} was made for another base model: it has {mine}; this model's "
            f"UNet has {theirs}"
        )


def _hidden(like: dict | None) -> dict:
    if not like:
        return {}
    return {key: like[key] for key in (*HIDDEN_KEYS, *HIDDEN_CONFIG) if key in like}
