"""SDXL model folders (diffusers' StableDiffusionXL(Img2Img|Inpaint)Pipeline layout) ->
components: the UNet, the VAE, the scheduler, and both text encoders joined into one
`DualTextEncoder` (text_encoder/ + tokenizer/ and text_encoder_2/ + tokenizer_2/; the refiner
has only the second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def is_sdxl_index(index: dict) -> bool:
    """Whether a model_index.json describes an SDXL pipeline."""
    name = str(index.get("_class_name") or "")
    return name.startswith("StableDiffusionXL") or _named(index.get("text_encoder_2"))


def _named(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and bool(entry[1])


def components_from_folder(folder: Path, index: dict, variant, tokenizer, registry, overrides):
    from paddiff import loader
    from paddiff.sdxl.encoders import DualTextEncoder

    if tokenizer is not None:
        raise ValueError(
            f"{folder} is an SDXL folder with its own tokenizer/ and tokenizer_2/; "
            "tokenizer= (--tokenizer) applies to SD 1.x / 2.x models"
        )
    index_path = folder / "model_index.json"
    scheduler_config = loader._read_json(folder / "scheduler" / "scheduler_config.json")

    def build(sub: str, kind: str, override, options: dict, required: bool = True) -> Any:
        if override is not None and not isinstance(override, str):
            return override
        entry = index.get(sub)
        if not override and not _named(entry):
            if required:
                raise ValueError(f"{index_path} names no class for {sub!r} (got {entry!r})")
            return None
        if not (folder / sub).is_dir():
            raise FileNotFoundError(
                f"component folder missing: {folder / sub} (named in {index_path})"
            )
        cls = registry.get(kind, override or entry[1])
        return loader._build_from_folder(cls, folder / sub, variant, options)

    prediction = {"prediction_type": scheduler_config.get("prediction_type", "epsilon")}
    components = {
        "denoiser": build("unet", "denoisers", overrides.get("denoiser"), prediction),
        "vae": build("vae", "vaes", overrides.get("vae"), {}),
    }
    text_encoder = overrides.get("text_encoder")
    if text_encoder is None or isinstance(text_encoder, str):
        # SDXL reads the penultimate hidden states of both encoders
        first = build(
            "text_encoder",
            "text_encoders",
            text_encoder,
            {"tokenizer_path": folder / "tokenizer", "hidden_states": "penultimate"},
            required=False,  # the refiner has only the second encoder
        )
        second = build(
            "text_encoder_2",
            "text_encoders",
            None,
            {"tokenizer_path": folder / "tokenizer_2", "hidden_states": "penultimate"},
        )
        force_zeros = index.get(
            "force_zeros_for_empty_prompt", index.get("_class_name") == "StableDiffusionXLPipeline"
        )
        text_encoder = DualTextEncoder(first, second, bool(force_zeros))
    components["text_encoder"] = text_encoder
    components["scheduler"] = loader._scheduler(
        overrides.get("scheduler"), scheduler_config, registry
    )
    return components


def components_from_single_file(path, state, config, config_folder, tokenizer, registry, overrides):
    """Components of an SDXL single file (paddiff.convert.original_sdxl), with configs
    inferred from its shapes, given per component (`config={"denoiser": {...}}`), or taken
    from a diffusers folder (`config=folder`, whose tokenizers are then used too)."""
    from paddiff import loader
    from paddiff.convert.original_sdxl import convert_sdxl_checkpoint
    from paddiff.sdxl.encoders import DualTextEncoder

    from_config = config_folder is not None and tokenizer == config_folder / "tokenizer"
    if tokenizer is not None and not from_config:  # (the loader's default for config= folders)
        raise ValueError(
            f"{path} is an SDXL checkpoint with two tokenizers; give a diffusers SDXL folder "
            "as config= (--config) to use its tokenizer/ and tokenizer_2/"
        )
    parts = convert_sdxl_checkpoint(state, None if config_folder else config)
    folders = {
        "denoiser": ("unet", "config.json"),
        "vae": ("vae", "config.json"),
        "text_encoder": ("text_encoder", "config.json"),
        "text_encoder_2": ("text_encoder_2", "config.json"),
        "scheduler": ("scheduler", "scheduler_config.json"),
    }
    if config_folder:
        for name, (sub, file) in folders.items():
            if name in parts and (config_folder / sub / file).is_file():
                parts[name].config = loader._read_json(config_folder / sub / file)

    def build(name: str, kind: str, class_name: str, options: dict):
        override = overrides.get(name)
        if override is not None and not isinstance(override, str):
            return override
        if name not in parts:
            return None
        cls = registry.get(kind, override or class_name)
        part = parts[name]
        return loader._build_from_state(cls, part.config, part.state, path, options)

    def tokenizer_options(name: str, sub: str) -> dict:
        if config_folder and (config_folder / sub).is_dir():
            return {"tokenizer_path": config_folder / sub}
        part = parts[name]
        cls = registry.get("text_encoders", part.config["architectures"][0])
        vocab = part.config.get("vocab_size")
        return {"tokenizer": loader._shipped_tokenizer(cls, path, part.pad_token, vocab)}

    scheduler_config = parts["scheduler"].config
    prediction = {"prediction_type": scheduler_config.get("prediction_type", "epsilon")}
    components = {
        "denoiser": build("denoiser", "denoisers", "UNet2DConditionModel", prediction),
        "vae": build("vae", "vaes", "AutoencoderKL", {}),
    }
    if components["vae"] is None:
        raise ValueError(f"{path} holds no vae weights; pass vae=<a loaded component>")
    text_encoder = overrides.get("text_encoder")
    if text_encoder is None or isinstance(text_encoder, str):
        penultimate = {"hidden_states": "penultimate"}
        first = None
        if "text_encoder" in parts:
            options = {**penultimate, **tokenizer_options("text_encoder", "tokenizer")}
            first = build("text_encoder", "text_encoders", "CLIPTextModel", options)
        options = {**penultimate, **tokenizer_options("text_encoder_2", "tokenizer_2")}
        second = build("text_encoder_2", "text_encoders", "CLIPTextModelWithProjection", options)
        # the base (two encoders) zeroes the empty negative prompt, the refiner does not
        text_encoder = DualTextEncoder(first, second, first is not None)
    components["text_encoder"] = text_encoder
    components["scheduler"] = loader._scheduler(
        overrides.get("scheduler"), scheduler_config, registry
    )
    return components
