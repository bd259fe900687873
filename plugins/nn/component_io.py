"""Reading and writing one model component folder (config.json + weights), diffusers layout."""

from __future__ import annotations

import json
from pathlib import Path


def read_config(folder: str | Path, defaults: dict) -> dict:
    """config.json over `defaults`; keys the component does not know are kept but unused."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} a model component folder?")
    return {**defaults, **json.loads(path.read_text(encoding="utf-8"))}


def load_component_weights(folder: str | Path, variant: str | None = None):
    """(state dict, the files it came from, for error messages).

    `paddiff.weights` knows every file name and format (safetensors, .bin, sharded, fp16
    variants, ppdiffusers); `state.layout` says whether Linear weights are stored transposed.
    """
    from paddiff.weights import load_component_weights as load

    state = load(folder, variant)
    return state, ", ".join(str(f) for f in state.files)


def save_component(folder: str | Path, config: dict, state: dict, weights_name: str) -> None:
    """Write config.json and a safetensors file as diffusers' save_pretrained does."""
    from paddiff.weights import save_state_dict  # paddiff's one .safetensors writer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (folder / "config.json").write_text(text, encoding="utf-8")
    save_state_dict(state, folder / weights_name, metadata={"format": "pt"})
