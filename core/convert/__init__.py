"""Weight-format converters: original (CompVis / A1111) single-file checkpoints to diffusers keys."""
