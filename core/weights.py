"""Reading weight files into NumPy state dicts, without torch.

This first version reads `.safetensors` files; the models issue extends it to PyTorch `.bin` /
`.ckpt` (restricted unpickler), sharded checkpoints, fp16 variants and ppdiffusers files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of one weights file, by key."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors files are supported so far")
    return load_file(str(path))
