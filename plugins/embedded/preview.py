"""Images from an embedded-model folder with a minimal sampling loop over paddiff's components.

Used while training, to look at and score checkpoints: export a checkpoint to a folder, then
`Previewer(folder).generate(prompts, seeds)`. Sampling is
DDIM with eta = 0 (Song et al. 2021, eq. 12) and classifier-free guidance (Ho & Salimans 2022).
The product itself generates through `paddiff.load_pipeline`, which reads the same folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import train


class Previewer:
    def __init__(self, folder: str | Path, threads: int = 2):
        from paddiff.loader import load_components

        train.setup_paddle(threads)
        parts = load_components(Path(folder))
        self.unet, self.vae, self.text_encoder = (
            parts["denoiser"],
            parts["vae"],
            parts["text_encoder"],
        )
        self.alphas_cumprod = train.training_alphas_cumprod()

    def generate(self, prompts, seeds, steps: int = 20, guidance: float = 4.0) -> np.ndarray:
        """uint8 images (N, 64, 64, 3), one per (prompt, seed)."""
        n = len(prompts)
        context = self.text_encoder.encode(list(prompts) + [""] * n)
        x = np.stack([np.random.default_rng(s).standard_normal((4, 16, 16)) for s in seeds])
        x = x.astype(np.float32)
        ts = np.linspace(999, 0, steps).round().astype(int)
        for i, t in enumerate(ts):
            out = self.unet(np.concatenate([x, x]), np.full(2 * n, t, np.float32), context)
            cond, uncond = out[:n], out[n:]
            eps = uncond + guidance * (cond - uncond)
            a = self.alphas_cumprod[t]
            a_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else 1.0
            x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
            x = (np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps).astype(np.float32)
        images = self.vae.decode(x / self.vae.scaling_factor)
        return np.clip((images.transpose(0, 2, 3, 1) + 1) * 127.5, 0, 255).round().astype(np.uint8)
