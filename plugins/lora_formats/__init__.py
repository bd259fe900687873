"""Readers of LoRA files (the `paddiff.lora_formats` entry-point group): kohya / A1111 /
LyCORIS LoCon, and diffusers / PEFT / ppdiffusers."""
