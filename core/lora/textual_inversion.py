"""Textual-inversion embeddings (Gal et al. 2022): new prompt tokens with learned vectors.

Files read (pickles through the restricted unpickler, never running code):

- diffusers' `learned_embeds.safetensors` / `.bin`: {token: vector [hidden] or [n, hidden]}
- A1111 `.pt`: {"string_to_param": {"*": [n, hidden]}, "name": ...}
- A1111 `.safetensors`: {"emb_params": [n, hidden]}

The text encoder does the rest through an optional method `add_tokens(token, vectors)` (and
`remove_tokens(tokens)`): a token of n vectors becomes n new ids, so it works wherever the
tokenizer runs, in prompts, negative prompts and WebUI emphasis ("(token:1.2)").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class EmbeddingFormatError(ValueError):
    """The file is not a textual-inversion embedding paddiff reads."""


def read_embedding_file(path: str | Path) -> tuple[str | None, np.ndarray]:
    """(the token the file names, or None; vectors [n, hidden] float32)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding file not found: {path}")
    if path.suffix == ".safetensors":
        from paddiff.weights import load_state_dict

        content = {key: np.asarray(value) for key, value in load_state_dict(path).items()}
    else:
        from paddiff.safe_pickle import load_pickled_object

        content = load_pickled_object(path)
    if not isinstance(content, dict):
        raise EmbeddingFormatError(f"{path}: holds a {type(content).__name__}, not an embedding")
    name = None
    if isinstance(content.get("string_to_param"), dict):  # A1111 .pt
        params = content["string_to_param"]
        if len(params) != 1:
            raise EmbeddingFormatError(f"{path}: string_to_param has {len(params)} entries")
        vectors = next(iter(params.values()))
        name = content.get("name") if isinstance(content.get("name"), str) else None
    elif "emb_params" in content:  # A1111 .safetensors
        vectors = content["emb_params"]
    else:  # diffusers: one entry, named by its token
        tensors = {k: v for k, v in content.items() if not isinstance(v, (str, int, float))}
        if len(tensors) != 1:
            raise EmbeddingFormatError(
                f"{path}: expected one embedding (diffusers' learned_embeds), found keys "
                + ", ".join(list(tensors)[:5])
            )
        name, vectors = next(iter(tensors.items()))
    vectors = np.asarray(_read(vectors), dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or not len(vectors):
        raise EmbeddingFormatError(f"{path}: embedding of shape {vectors.shape} (want [n, hidden])")
    return name, vectors


def _read(value):
    return value.read() if hasattr(value, "read") else value


def token_width(encoder) -> int:
    """The width of a text encoder's token rows (XLM-R's output is projected to another)."""
    embedding = getattr(encoder, "token_embedding", None)
    if embedding is not None:
        return int(embedding().weight.shape[1])
    return int(encoder.hidden_size)


def load_textual_inversion(pipeline, path, token: str | None = None) -> str:
    """Add the embedding in `path` to the pipeline's text encoder as `token` (default: the name
    in the file, else the file's stem); returns the token."""
    path = Path(path)
    name, vectors = read_embedding_file(path)
    token = token or name or path.stem
    encoder = pipeline.text_encoder
    add = getattr(encoder, "add_tokens", None)
    if add is None:
        raise EmbeddingFormatError(
            f"{path}: the text encoder {type(encoder).__name__} cannot take new tokens "
            "(it has no add_tokens method)"
        )
    hidden = token_width(encoder)
    if vectors.shape[1] != hidden:
        raise EmbeddingFormatError(
            f"{path}: vectors of width {vectors.shape[1]}, but this text encoder's width is "
            f"{hidden} (an embedding for another model?); nothing was added"
        )
    add(token, vectors)
    pipeline.prompt_cache.clear()
    pipeline.embeddings[token] = path
    return token
