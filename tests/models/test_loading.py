"""save_pretrained round trips, strict weight loading, unsupported configs and tiled decoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from paddiff.plugins.denoisers.unet import UNet2DConditionModel
from paddiff.plugins.nn.state_dict import StateDictMismatchError
from paddiff.plugins.text_encoders.clip import CLIPTextModel, to_network_keys
from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL
from paddiff.weights import save_state_dict
from safetensors.numpy import load_file

SD1 = Path(__file__).parents[1] / "fixtures" / "sd" / "sd1"
COMPONENTS = {
    "unet": (UNet2DConditionModel, "diffusion_pytorch_model.safetensors"),
    "vae": (AutoencoderKL, "diffusion_pytorch_model.safetensors"),
    "text_encoder": (CLIPTextModel, "model.safetensors"),
}


def copy_component(tmp_path: Path, component: str) -> Path:
    """A writable copy of an sd1 component (with the tokenizer beside it)."""
    shutil.copytree(SD1 / component, tmp_path / component)
    shutil.copytree(SD1 / "tokenizer", tmp_path / "tokenizer")
    return tmp_path / component


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_save_pretrained_round_trips_exactly(tmp_path, component):
    cls, weights_name = COMPONENTS[component]
    model = cls.from_pretrained(SD1 / component)
    out = tmp_path / component
    model.save_pretrained(out)
    shutil.copytree(SD1 / "tokenizer", tmp_path / "tokenizer")

    original, saved = (
        load_file(str(SD1 / component / weights_name)),
        load_file(str(out / weights_name)),
    )
    if component == "text_encoder":  # written with transformers 4.x's `text_model.` prefix
        original = to_network_keys(original)
    assert sorted(saved) == sorted(original)
    for key, value in original.items():
        assert saved[key].shape == value.shape and np.array_equal(saved[key], value), key
    config, saved_config = (
        json.loads((folder / "config.json").read_text()) for folder in (SD1 / component, out)
    )
    assert {k: v for k, v in config.items() if k in saved_config} == {
        k: v for k, v in saved_config.items() if k in config
    }
    cls.from_pretrained(out)  # and the saved folder loads again


def test_missing_key_names_the_file_and_the_key(tmp_path):
    folder = copy_component(tmp_path, "unet")
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["mid_block.resnets.1.conv2.weight"]
    save_state_dict(state, weights)
    with pytest.raises(StateDictMismatchError) as info:
        UNet2DConditionModel.from_pretrained(folder)
    message = str(info.value)
    assert str(weights) in message
    assert "1 missing keys: mid_block.resnets.1.conv2.weight" in message


def test_wrong_shape_and_unexpected_key_are_reported(tmp_path):
    folder = copy_component(tmp_path, "vae")
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["quant_conv.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    state["encoder.extra.weight"] = np.zeros(3, np.float32)
    save_state_dict(state, weights)
    with pytest.raises(StateDictMismatchError) as info:
        AutoencoderKL.from_pretrained(folder)
    message = str(info.value)
    assert "quant_conv.weight: file (8, 8, 3, 3), network (8, 8, 1, 1)" in message
    assert "1 unexpected keys: encoder.extra.weight" in message


def test_linear_weights_are_checked_in_torch_layout(tmp_path):
    """A Linear weight saved already transposed (Paddle layout) must not load silently."""
    folder = copy_component(tmp_path, "text_encoder")
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    key = "encoder.layers.0.mlp.fc1.weight"  # torch layout (64, 32)
    state[key] = np.ascontiguousarray(state[key].T)
    save_state_dict(state, weights)
    with pytest.raises(StateDictMismatchError, match="mlp.fc1.weight: file \\(32, 64\\)"):
        CLIPTextModel.from_pretrained(folder)


def test_unsupported_unet_config_is_refused(tmp_path):
    folder = copy_component(tmp_path, "unet")
    config = json.loads((folder / "config.json").read_text())
    config.update(addition_embed_type="image", down_block_types=["SimpleDownBlock2D"] * 3)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="addition_embed_type='image'.*SimpleDownBlock2D"):
        UNet2DConditionModel.from_pretrained(folder)


def test_per_block_flags_with_supported_values_are_accepted(tmp_path):
    folder = copy_component(tmp_path, "unet")
    config = json.loads((folder / "config.json").read_text())
    config.update(only_cross_attention=[False, False, False])
    (folder / "config.json").write_text(json.dumps(config))
    UNet2DConditionModel.from_pretrained(folder)
    config.update(only_cross_attention=[True, False, False])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="only_cross_attention=\\[True, False, False\\]"):
        UNet2DConditionModel.from_pretrained(folder)


def test_unsupported_vae_config_is_refused(tmp_path):
    folder = copy_component(tmp_path, "vae")
    config = json.loads((folder / "config.json").read_text())
    config.update(up_block_types=["UpDecoderBlock2D"])  # one block for two levels
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="up_block_types=.*supported: 2 x 'UpDecoderBlock2D'"):
        AutoencoderKL.from_pretrained(folder)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    folder = copy_component(tmp_path, "vae")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights in .*vae"):
        AutoencoderKL.from_pretrained(folder)


def test_tiled_decode_blends_tiles_seamlessly(monkeypatch):
    """With a decoder that acts pixel by pixel, tiling must not change the image at all."""
    vae = AutoencoderKL.from_pretrained(SD1 / "vae")
    latents = np.random.default_rng(0).standard_normal((1, 4, 23, 18)).astype(np.float32)
    whole = vae.decode(latents)
    vae.enable_tiling(tile_size=23)  # tiles as large as the latents: the ordinary decode
    assert np.array_equal(vae.decode(latents), whole)

    def pointwise(part):  # nearest upsampling of a fixed mix of channels
        f = vae.downsample_factor
        rgb = np.tanh(part[:, :3] - part[:, 3:])
        return rgb.repeat(f, axis=2).repeat(f, axis=3)

    monkeypatch.setattr(vae, "_decode", pointwise)
    vae.enable_tiling(tile_size=8, tile_overlap=3)
    np.testing.assert_allclose(vae.decode(latents), pointwise(latents), atol=1e-6)


def test_tiled_decode_of_the_real_network_stays_close():
    vae = AutoencoderKL.from_pretrained(SD1 / "vae")
    latents = np.random.default_rng(1).standard_normal((1, 4, 20, 20)).astype(np.float32)
    whole = vae.decode(latents)
    vae.enable_tiling(tile_size=12, tile_overlap=6)
    tiled = vae.decode(latents)
    assert tiled.shape == whole.shape
    # GroupNorm statistics differ per tile, so only closeness is expected (as in diffusers).
    assert np.abs(tiled - whole).mean() < 0.25 * np.abs(whole).mean()


def test_consume_empties_a_plain_dict_and_loads_the_same_weights():
    from paddiff.plugins.nn.state_dict import export_state_dict, load_state_dict_into

    vae = AutoencoderKL.from_pretrained(SD1 / "vae")
    state = load_file(str(SD1 / "vae" / "diffusion_pytorch_model.safetensors"))
    expected = {key: value.copy() for key, value in state.items()}
    load_state_dict_into(vae.net, state, "in memory", consume=True)
    assert state == {}
    exported = export_state_dict(vae.net)
    assert all(np.array_equal(exported[key], value) for key, value in expected.items())
