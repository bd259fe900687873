"""Small readers shared by the BERT and XLM-R text encoders and their tokenizers."""

from __future__ import annotations

import json
import re
from pathlib import Path


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


def refuse_added_tokens(folder: Path, specials, tokenizer_json: dict | None = None) -> None:
    """transformers matches added tokens (added_tokens.json, or non-special entries of
    tokenizer.json's added_tokens) before its normal tokenization; paddiff's tokenizers do not
    implement that, so a folder that has any (other than the special tokens) is refused rather
    than tokenized differently. Taiyi ships an empty added_tokens.json."""
    added = set(read_json(folder / "added_tokens.json"))
    added |= {entry["content"] for entry in (tokenizer_json or {}).get("added_tokens", [])}
    extra = sorted(added - set(specials))
    if extra:
        raise ValueError(
            f"{folder}: added tokens are not supported (found {', '.join(map(repr, extra[:5]))})"
        )


def tokenizer_folder(text_encoder_folder: Path, override: str | Path | None) -> Path:
    """The `tokenizer/` folder next to `text_encoder/` (diffusers layout), unless given."""
    folder = Path(override) if override is not None else text_encoder_folder.parent / "tokenizer"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"tokenizer folder {folder} not found (expected next to {text_encoder_folder}; "
            "pass tokenizer_path= to use another one)"
        )
    return folder


def drop_keys(state, patterns: tuple[str, ...]):
    """`state` without the keys matching any regex in `patterns` (lazily for paddiff.weights'
    StateDict, whose tensors stay unread)."""

    def keep(key: str) -> str | None:
        return None if any(re.search(p, key) for p in patterns) else key

    if hasattr(state, "renamed"):
        return state.renamed(keep)
    return {key: value for key, value in state.items() if keep(key)}
