"""A LoRA paddiff trained, read by diffusers: the same UNet outputs and text hidden states.

tests/fixtures/training/make_trained_lora.py trained the files with paddiff;
make_reference.py loaded them with diffusers 0.42.1 (checked there against weights merged by
hand) and saved diffusers' outputs. Here paddiff loads the same files into its pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.training_data import SD1

HERE = Path(__file__).parents[1] / "fixtures" / "training"


@pytest.mark.parametrize("file_format", ["kohya", "diffusers"])
def test_paddiff_and_diffusers_give_the_same_outputs_with_a_trained_lora(file_format):
    import paddiff

    ref = np.load(HERE / "reference.npz")
    inputs = np.load(HERE / "inputs.npz")
    pipe = paddiff.load_pipeline(SD1)
    report = pipe.load_lora_weights(HERE / f"trained_{file_format}.safetensors")
    assert report.format == file_format and not report.skipped
    unet = pipe.denoiser(inputs["latents"], inputs["timesteps"], inputs["context"])
    text = pipe.text_encoder.encode([str(p) for p in inputs["prompts"]])
    assert np.abs(ref[f"unet_{file_format}"] - ref["unet_base"]).max() > 1e-2  # not a no-op
    np.testing.assert_allclose(unet, ref[f"unet_{file_format}"], atol=1e-4)
    np.testing.assert_allclose(text, ref[f"text_{file_format}"], atol=1e-4)
