"""SDXL LoRAs (kohya's lora_te1_ / lora_te2_ / lora_unet_ keys) through paddiff.lora: each
layer lands in the component the prefix names, as W0 + scale * alpha / rank * up @ down, and
unloading gives the model back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.weights import save_state_dict

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"
RANK, ALPHA = 4, 2.0
# kohya key -> (component attribute path, Paddle layer path); the same CLIP layer name in both
# encoders, so a mix-up between lora_te1_ and lora_te2_ shows
LAYERS = {
    "lora_te1_text_model_encoder_layers_1_self_attn_q_proj": (
        "text_encoder.first",
        "text_model.encoder.layers.1.self_attn.q_proj",
    ),
    "lora_te2_text_model_encoder_layers_1_self_attn_q_proj": (
        "text_encoder.second",
        "text_model.encoder.layers.1.self_attn.q_proj",
    ),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": (
        "denoiser",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
    ),
}


def layer_weight(pipe, owner: str, path: str) -> np.ndarray:
    component = pipe
    for part in owner.split("."):
        component = getattr(component, part)
    layer = component.net
    for part in path.split("."):
        layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
    return layer.weight.numpy().copy()


@pytest.fixture(scope="module")
def pipe():
    return paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")


def write_lora(pipe, path: Path) -> dict:
    rng = np.random.default_rng(0)
    tensors, deltas = {}, {}
    for key, (owner, layer) in LAYERS.items():
        in_features, out_features = layer_weight(pipe, owner, layer).shape  # Paddle layout
        down = rng.standard_normal((RANK, in_features)).astype(np.float32)
        up = rng.standard_normal((out_features, RANK)).astype(np.float32)
        tensors.update(
            {
                f"{key}.lora_down.weight": down,
                f"{key}.lora_up.weight": up,
                f"{key}.alpha": np.asarray(ALPHA, np.float32),
            }
        )
        deltas[key] = (ALPHA / RANK) * (up @ down)  # torch layout (out, in)
    save_state_dict(tensors, path)
    return deltas


def test_sdxl_kohya_lora_lands_in_the_right_encoder_and_unloads(pipe, tmp_path):
    originals = {k: layer_weight(pipe, *where) for k, where in LAYERS.items()}
    deltas = write_lora(pipe, tmp_path / "sdxl_lora.safetensors")
    report = pipe.load_lora_weights(tmp_path / "sdxl_lora.safetensors", scale=0.5)
    assert not report.skipped
    for key, where in LAYERS.items():
        expected = originals[key] + 0.5 * deltas[key].T
        np.testing.assert_allclose(layer_weight(pipe, *where), expected, rtol=1e-5, atol=1e-6)
    pipe.unload_lora_weights()
    for key, where in LAYERS.items():
        np.testing.assert_array_equal(layer_weight(pipe, *where), originals[key])
