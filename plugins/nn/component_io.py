"""Reading and writing one model component folder (config.json + weights), diffusers layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The file names diffusers (models) and transformers (text encoders) write, in preference order.
WEIGHT_FILE_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors")


def read_config(folder: str | Path, defaults: dict) -> dict:
    """config.json over `defaults`; keys the component does not know are kept but unused."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} a model component folder?")
    return {**defaults, **json.loads(path.read_text(encoding="utf-8"))}


def find_weights_file(folder: str | Path) -> Path:
    """The component's weights file.

    The only place that knows file names: it will defer to `paddiff.weights` once that finds
    .bin, sharded and fp16-variant files too.
    """
    folder = Path(folder)
    for name in WEIGHT_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"no weights in {folder}: expected one of {', '.join(WEIGHT_FILE_NAMES)}"
    )


def load_component_weights(folder: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """(torch-layout state dict, the file it came from, for error messages)."""
    from paddiff.weights import load_state_dict

    path = find_weights_file(folder)
    return load_state_dict(path), str(path)


def save_component(folder: str | Path, config: dict, state: dict, weights_name: str) -> None:
    """Write config.json and a safetensors file as diffusers' save_pretrained does."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (folder / "config.json").write_text(text, encoding="utf-8")
    save_file(state, str(folder / weights_name), metadata={"format": "pt"})
