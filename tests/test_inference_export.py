"""The static-graph fast path: export a Layer, run it with Paddle Inference, compare to dygraph."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddiff.plugins.inference.cache import ExportCache, fingerprint
from paddiff.plugins.inference.export import InputSpec
from paddiff.plugins.inference.predictor import Predictor
from paddle import nn


class SmallDenoiser(nn.Layer):
    """The op patterns of a UNet that matter under oneDNN: sinusoidal embedding, conv, 2x nearest
    upsampling, cross-attention."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2D(4, 16, 3, padding=1)
        self.time = nn.Linear(16, 16)
        self.to_q = nn.Linear(16, 16)
        self.conv_out = nn.Conv2D(16, 4, 3, padding=1)

    def forward(self, sample, timestep, context):
        freqs = paddle.exp(-math.log(10000.0) * paddle.arange(8, dtype="float32") / 8)
        args = timestep[:, None] * freqs[None, :]
        embedding = paddle.sin(paddle.concat([args + math.pi / 2, args], axis=-1))  # [cos, sin]
        h = self.conv_in(sample) + self.time(embedding)[:, :, None, None]
        b, c, height, width = h.shape
        h = h.reshape([b, c, height, 1, width, 1]).expand([b, c, height, 2, width, 2])
        h = h.reshape([b, c, height * 2, width * 2])
        queries = self.to_q(h.flatten(2).transpose([0, 2, 1]))
        weights = paddle.nn.functional.softmax(
            queries @ context.transpose([0, 2, 1]) / 4.0, axis=-1
        )
        h = h + (weights @ context).transpose([0, 2, 1]).reshape(h.shape)
        return self.conv_out(paddle.nn.functional.silu(h))


SPECS = [
    InputSpec("sample", (None, 4, 8, 8)),
    InputSpec("timestep", (None,)),
    InputSpec("context", (None, 6, 16)),
]


def _inputs(batch: int):
    rng = np.random.default_rng(batch)
    return (
        rng.standard_normal((batch, 4, 8, 8), dtype=np.float32),
        np.linspace(1, 999, batch).astype(np.float32),
        rng.standard_normal((batch, 6, 16), dtype=np.float32),
    )


@pytest.fixture(scope="module")
def layer():
    paddle.seed(0)
    return SmallDenoiser()


@pytest.mark.parametrize("batch", [1, 2])
def test_exported_program_matches_dynamic_graph(layer, tmp_path_factory, batch):
    cache = ExportCache(tmp_path_factory.mktemp("cache"), threads=2)
    predictor = cache.predictor(layer, fingerprint(layer), "unet", SPECS)
    inputs = _inputs(batch)
    expected = layer(*(paddle.to_tensor(a) for a in inputs)).numpy()
    (actual,) = predictor(*inputs)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)


def test_cache_exports_once_and_reuses(layer, tmp_path, monkeypatch):
    import paddiff.plugins.inference.cache as cache_module

    exports = []
    real_export = cache_module.export_layer
    monkeypatch.setattr(
        cache_module, "export_layer", lambda *a: exports.append(a) or real_export(*a)
    )
    key = fingerprint(layer)
    ExportCache(tmp_path).predictor(layer, key, "unet", SPECS)
    ExportCache(tmp_path).predictor(layer, key, "unet", SPECS)  # a new process would do the same
    assert len(exports) == 1
    assert not list(tmp_path.rglob("*.partial-*")), "temporary export files left behind"


def test_fingerprint_changes_with_weights(layer):
    paddle.seed(1)
    other = SmallDenoiser()
    assert fingerprint(layer) == fingerprint(layer)
    assert fingerprint(layer) != fingerprint(other)


def test_missing_program_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported program"):
        Predictor(tmp_path / "nothing")


FIXTURES = Path(__file__).parent / "fixtures" / "sd"


@pytest.mark.parametrize("fixture", ["sd1", "sd2_v"])
def test_static_unet_component_matches_dynamic(fixture, tmp_path):
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(FIXTURES / fixture / "unet")
    rng = np.random.default_rng(0)
    for batch in (2, 1):  # one exported program serves both batch sizes
        latents = rng.standard_normal((batch, unet.in_channels, 8, 8), dtype=np.float32)
        context = rng.standard_normal(
            (batch, 77, unet.config["cross_attention_dim"]), dtype=np.float32
        )
        unet.runner.use_dynamic()
        expected = unet(latents, 500.0, context)
        unet.runner.use_static(ExportCache(tmp_path))
        np.testing.assert_allclose(unet(latents, 500.0, context), expected, atol=1e-4, rtol=0)
    assert len(list(tmp_path.rglob("*.pdiparams"))) == 1


def test_static_vae_decoder_matches_dynamic(tmp_path):
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(FIXTURES / "sd1" / "vae")
    latents = np.random.default_rng(1).standard_normal((2, 4, 8, 8), dtype=np.float32)
    expected = vae.decode(latents)
    vae.runner.use_static(ExportCache(tmp_path))
    np.testing.assert_allclose(vae.decode(latents), expected, atol=1e-4, rtol=0)
