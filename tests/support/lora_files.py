"""Small LoRA files for the embedded model, written by tests (nothing is downloaded)."""

from __future__ import annotations

import numpy as np


def write_peft_lora(path, seed: int) -> None:
    """A PEFT-format LoRA (rank 2) on two attention projections of the embedded UNet."""
    from paddiff.weights import save_state_dict

    rng = np.random.default_rng(seed)
    tensors = {}
    for block in ("down_blocks.1", "up_blocks.1"):
        module = f"unet.{block}.attentions.0.transformer_blocks.0.attn1.to_q"
        tensors[f"{module}.lora_A.weight"] = rng.normal(0, 0.5, (2, 64)).astype(np.float32)
        tensors[f"{module}.lora_B.weight"] = rng.normal(0, 0.5, (64, 2)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state_dict(tensors, path)
