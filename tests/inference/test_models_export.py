"""The networks export with paddle.jit.save and give the reference results under oneDNN.

Paddle 3.3.1's oneDNN executor refuses `nearest_interp` and miscomputes concat(sin, cos); the
networks avoid both patterns. These tests keep it that way: they export the tiny fixtures and
compare Paddle Inference's output (oneDNN on) with diffusers' reference outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sd"


def run_exported(layer, inputs: dict[str, np.ndarray], folder: Path) -> np.ndarray:
    import paddle
    from paddle import inference
    from paddle.static import InputSpec

    # The batch is left dynamic, as a paddiff.execution.Network exports it.
    specs = [InputSpec([None, *a.shape[1:]], str(a.dtype), name) for name, a in inputs.items()]
    paddle.jit.save(
        paddle.jit.to_static(layer, input_spec=specs, full_graph=True), str(folder / "m")
    )
    config = inference.Config(str(folder / "m.json"), str(folder / "m.pdiparams"))
    config.disable_gpu()
    config.enable_mkldnn()
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(inputs[name])
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def uses_fused_self_attention(folder: Path) -> bool:
    """Whether the program `run_exported` saved in `folder` holds Paddle's fused self-attention."""
    return "self_dp_attention" in (folder / "m.json").read_text(encoding="utf-8")


def test_exported_unet_matches_diffusers_under_onednn(tmp_path):
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    ref = np.load(FIXTURES / "sd2_v" / "reference.npz")
    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "sd2_v" / "unet")
    inputs = {
        "sample": ref["unet_even_latents"],
        "timestep": ref["unet_even_timesteps"],
        "encoder_hidden_states": ref["unet_even_context"],
    }
    out = run_exported(unet.net, inputs, tmp_path)
    assert np.abs(out - ref["unet_even_output"]).max() <= 1e-4
    # the fast attention where the machine has it (AVX-512, no GPU), the plain one elsewhere
    from paddiff.plugins.nn.layers import fused_self_attention_supported

    assert uses_fused_self_attention(tmp_path) == fused_self_attention_supported()


def test_exported_vae_decoder_matches_diffusers_under_onednn(tmp_path):
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    ref = np.load(FIXTURES / "sd1" / "reference.npz")
    vae = AutoencoderKL.from_pretrained(FIXTURES / "sd1" / "vae")
    out = run_exported(vae.net, {"latents": ref["vae_latents"]}, tmp_path)
    assert out.shape == ref["vae_decoded"].shape
    assert np.abs(out - ref["vae_decoded"]).max() <= 1e-4
    from paddiff.plugins.nn.layers import fused_self_attention_supported

    assert uses_fused_self_attention(tmp_path) == fused_self_attention_supported()


def test_attention_in_query_chunks_is_exact_and_exports(tmp_path, monkeypatch):
    """Large images split attention into query chunks; force that on the tiny UNet."""
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel
    from paddiff.plugins.nn import layers

    ref = np.load(FIXTURES / "sd1" / "reference.npz")
    unet = UNet2DConditionModel.from_pretrained(FIXTURES / "sd1" / "unet")
    inputs = {
        "sample": ref["unet_odd_latents"],
        "timestep": ref["unet_odd_timesteps"],
        "encoder_hidden_states": ref["unet_odd_context"],
    }
    monkeypatch.setattr(layers, "MAX_SCORES_PER_SAMPLE", 4 * 77 * 10)  # 10 query rows a chunk
    chunked = unet(*inputs.values())
    assert np.abs(chunked - ref["unet_odd_output"]).max() <= 1e-4
    exported = run_exported(unet.net, inputs, tmp_path)
    assert np.abs(exported - ref["unet_odd_output"]).max() <= 1e-4


@pytest.mark.parametrize("variant", ["sd1"])
def test_exported_text_encoder_matches_transformers_under_onednn(tmp_path, variant):
    from paddiff.plugins.text_encoders.clip import CLIPTextModel

    ref = np.load(FIXTURES / variant / "reference.npz")
    clip = CLIPTextModel.from_pretrained(FIXTURES / variant / "text_encoder")
    out = run_exported(clip.net, {"input_ids": ref["token_ids"]}, tmp_path)
    assert np.abs(out - ref["text_hidden_states"]).max() <= 1e-4
