"""Denoisers: the UNet2DConditionModel of Stable Diffusion 1.x / 2.x."""
