"""SDXL's two text encoders seen as one `TextEncoder`.

SDXL conditions its UNet on both encoders' penultimate hidden states side by side (768 + 1280
wide for CLIP ViT-L and OpenCLIP ViT-bigG) and on the second encoder's pooled, projected
embedding of the prompt. The refiner has only the second encoder. The parts are ordinary
registered text encoders; the second must offer `encode_with_pooled(prompts)`.
"""

from __future__ import annotations

import numpy as np


class DualTextEncoder:
    """`first` (may be None: the refiner) and `second` text encoders, as SDXL combines them.

    force_zeros_for_empty_prompt: with no negative prompt, the unconditional embeddings are
    zeros rather than the empty prompt's (the base model's model_index.json sets it).
    """

    def __init__(self, first, second, force_zeros_for_empty_prompt: bool = False):
        if not callable(getattr(second, "encode_with_pooled", None)):
            raise TypeError(
                f"SDXL's second text encoder must give pooled embeddings "
                f"(encode_with_pooled); {type(second).__name__} does not"
            )
        self.first, self.second = first, second
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.parts = [e for e in (first, second) if e is not None]
        self.max_length = int(second.max_length)
        self.hidden_size = sum(int(e.hidden_size) for e in self.parts)
        self.pooled_size = int(second.pooled_size)
        self.tokenizer = second.tokenizer

    def tokenize(self, prompts):
        """The second encoder's ids (both tokenizers split alike; only padding differs)."""
        return self.second.tokenize(prompts)

    def networks(self) -> list:
        return [n for e in self.parts for n in getattr(e, "networks", list)()]

    def encode(self, prompts) -> np.ndarray:
        return self.encode_with_pooled(prompts)[0]

    def encode_with_pooled(self, prompts) -> tuple[np.ndarray, np.ndarray]:
        """(hidden states (B, 77, sum of widths), pooled (B, pooled width)), diffusers'
        prompt_embeds and pooled_prompt_embeds."""
        hidden, pooled = self.second.encode_with_pooled(list(prompts))
        if self.first is not None:
            first = np.asarray(self.first.encode(list(prompts)), np.float32)
            hidden = np.concatenate([first, hidden], axis=-1)
        return np.asarray(hidden, np.float32), np.asarray(pooled, np.float32)

    def unconditional_with_pooled(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """What guidance contrasts against when no negative prompt is given."""
        if self.force_zeros_for_empty_prompt:
            return (
                np.zeros((batch_size, self.max_length, self.hidden_size), np.float32),
                np.zeros((batch_size, self.pooled_size), np.float32),
            )
        return self.encode_with_pooled([""] * batch_size)

    def unconditional(self, batch_size: int) -> np.ndarray:
        return self.unconditional_with_pooled(batch_size)[0]

    def encode_weighted_with_pooled(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """WebUI emphasis and prompts over the window (paddiff.prompt_weighting) on both
        encoders: each encoder's chunks are weighted on their own (as WebUI does per encoder)
        and put side by side; the pooled embedding is the second encoder's of the prompt
        without its emphasis syntax (its first window, as WebUI takes the first chunk's)."""
        from paddiff.prompt_weighting import BREAK, encode_weighted, parse_weights

        hidden = np.concatenate([encode_weighted(e, text) for e in self.parts], axis=-1)
        plain = "".join(t for t, _ in parse_weights(text) if t is not BREAK)
        pooled = self.second.encode_with_pooled([plain])[1]
        return hidden, np.asarray(pooled, np.float32)
