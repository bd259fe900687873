"""Reading the files of a diffusers `text_encoder/` + `tokenizer/` pair, and strict loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# Weight file names in the order they are preferred. Formats other than safetensors are read by
# paddiff.weights once it supports them; nothing format-specific happens here.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_json(path: Path, required: bool = False) -> dict:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} not found")
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def token_text(value):
    """tokenizer_config.json stores special tokens as strings or as AddedToken dicts."""
    return value["content"] if isinstance(value, dict) and "content" in value else value


def tokenizer_folder(text_encoder_folder: Path, override: str | Path | None) -> Path:
    """The `tokenizer/` folder next to `text_encoder/` (diffusers layout), unless given."""
    folder = Path(override) if override is not None else text_encoder_folder.parent / "tokenizer"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"tokenizer folder {folder} not found (expected next to {text_encoder_folder}; "
            "pass tokenizer_path= to use another one)"
        )
    return folder


def load_weights(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The state dict of a component folder (the first of WEIGHT_FILES that exists)."""
    from paddiff.weights import load_state_dict

    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name, load_state_dict(folder / name)
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise FileNotFoundError(
        f"{folder}: no weights file ({' or '.join(WEIGHT_FILES)}); found {present}"
    )


def load_strict(layer, state: dict[str, np.ndarray], source: Path, ignored: tuple[str, ...] = ()):
    """Copy `state` (transformers key names, torch layouts) into a Paddle layer.

    Linear weights are transposed: torch stores them [out, in], Paddle [in, out]. Keys matching
    an `ignored` pattern (weights the pipeline never uses, such as the pooler) are skipped. Any
    other missing, unexpected or mis-shaped key is an error naming the file and the keys.
    """
    import paddle

    params = layer.state_dict()
    linear_weights = {
        f"{name}.weight"
        for name, sub in layer.named_sublayers()
        if isinstance(sub, paddle.nn.Linear)
    }
    state = {k: v for k, v in state.items() if not any(re.search(p, k) for p in ignored)}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    wrong_shape = []
    arrays = {}
    for key in sorted(set(params) & set(state)):
        array = state[key].T if key in linear_weights else state[key]
        if tuple(array.shape) != tuple(params[key].shape):
            wrong_shape.append(
                f"{key}: file {tuple(state[key].shape)}, model {tuple(params[key].shape)}"
            )
        arrays[key] = np.ascontiguousarray(array, dtype=np.float32)
    if missing or unexpected or wrong_shape:
        problems = [
            f"{label}: {', '.join(keys)}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if keys
        ]
        raise ValueError(f"{source} does not fit {type(layer).__name__}: " + "; ".join(problems))
    for key, array in arrays.items():
        params[key].set_value(array)
