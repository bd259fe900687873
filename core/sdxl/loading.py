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
