"""Original single-file Stable Diffusion checkpoints (CompVis / A1111 layout) as components.

A single `.safetensors` / `.ckpt` holds the whole model under three prefixes:

    model.diffusion_model.*   the UNet            -> "denoiser" (UNet2DConditionModel)
    first_stage_model.*       the autoencoder     -> "vae" (AutoencoderKL)
    cond_stage_model.*        the text encoder    -> "text_encoder" (CLIPTextModel)

`convert_checkpoint` renames each part's keys to diffusers' (lazily: no tensor is read) and
infers each part's diffusers config from the tensors' shapes. What the shapes cannot tell (the
number of attention heads of unusual models, the prediction type, the VAE scaling factor) follows
the SD 1.x / 2.x conventions and can be overridden per component. Other keys (EMA copies, the
DDPM schedule buffers) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from paddiff.convert import original_clip, original_unet, original_vae
from paddiff.convert.keymap import rename_state
from paddiff.weights import StateDict, WeightsFormatError


@dataclass
class Converted:
    """One component: its diffusers config, and its weights under diffusers' keys."""

    config: dict
    state: StateDict | None  # None for the scheduler
    # text encoder only: the pad token of the tokenizer Stable Diffusion pairs with it (SD 1.x
    # pads with "<|endoftext|>"; SD 2.x's tokenizer folders pad with "!"). Same vocabulary.
    pad_token: str | None = None


def is_original_checkpoint(state: StateDict) -> bool:
    return any(k.startswith(original_unet.PREFIX) for k in state)


def convert_checkpoint(
    state: StateDict, overrides: dict[str, dict] | None = None
) -> dict[str, Converted]:
    """Components found in an original checkpoint: "denoiser", "vae", "text_encoder" (those
    present), and "scheduler". `overrides` maps a component name to config entries that replace
    the inferred ones, e.g. {"denoiser": {"attention_head_dim": 8}}."""
    overrides = overrides or {}
    unknown = set(overrides) - {"denoiser", "vae", "text_encoder", "scheduler"}
    if unknown:
        raise ValueError(f"config overrides for unknown components: {', '.join(sorted(unknown))}")
    if not is_original_checkpoint(state):
        raise WeightsFormatError(
            f"{state.files[0] if state.files else 'state dict'}: not an original Stable Diffusion "
            f"checkpoint (no {original_unet.PREFIX}* keys)"
        )
    parts: dict[str, Converted] = {"denoiser": _unet(state)}
    if any(k.startswith(original_vae.PREFIX) for k in state):
        parts["vae"] = _vae(state)
    openclip = any(k.startswith(original_clip.OPENCLIP_PREFIX) for k in state)
    if openclip:
        parts["text_encoder"] = Converted(
            original_clip.openclip_config(state), original_clip.convert_openclip(state), "!"
        )
    elif any(k.startswith(original_clip.CLIP_PREFIX) for k in state):
        parts["text_encoder"] = Converted(
            original_clip.clip_config(state), original_clip.convert_clip(state), "<|endoftext|>"
        )
    # SD 2.x single files are mostly the 768-v models; the 512 "base" one needs
    # overrides={"scheduler": {"prediction_type": "epsilon"}}.
    parts["scheduler"] = Converted(scheduler_config(v_prediction=openclip), None)
    for name, extra in overrides.items():
        if name in parts:
            parts[name].config.update(extra)
    return parts


def _shapes(state: StateDict, prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: state.shape(k) for k in state if k.startswith(prefix)}


def _unet(state: StateDict) -> Converted:
    shapes = _shapes(state, original_unet.PREFIX)
    keymap = original_unet.unet_keymap(*original_unet.unet_structure(shapes))
    converted = rename_state(state, original_unet.PREFIX, keymap, "UNet")
    return Converted(original_unet.unet_config(shapes), converted)


def _vae(state: StateDict) -> Converted:
    shapes = _shapes(state, original_vae.PREFIX)
    keymap = original_vae.vae_keymap(*original_vae.vae_structure(shapes))
    converted = rename_state(
        state, original_vae.PREFIX, keymap, "VAE", reshape=original_vae.vae_reshape
    )
    return Converted(original_vae.vae_config(shapes), converted)


def scheduler_config(v_prediction: bool) -> dict:
    """The noise schedule SD 1.x and 2.x were trained with (the checkpoints do not say)."""
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "v_prediction" if v_prediction else "epsilon",
    }
