"""The embedded model's training networks compute what diffusers' AutoencoderKL and
UNet2DConditionModel and transformers' BertModel compute, under the same key names, so the trained
weights mean the same thing when the exported folder is loaded as a regular model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
from paddiff.plugins.embedded import nets  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "embedded"


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURES / "reference.safetensors"))


@pytest.fixture(scope="module")
def configs():
    configs = json.loads((FIXTURES / "tiny_configs.json").read_text())
    bert = {"layer_norm_eps": 1e-12, **configs["bert"]}
    return {**configs, "bert": bert}


def weights(reference, prefix):
    return {k[len(prefix) :]: v for k, v in reference.items() if k.startswith(prefix)}


def test_vae_matches_diffusers(reference, configs):
    net = nets.AutoencoderKLNet(configs["vae"])
    nets.import_state_dict(net, weights(reference, "vae.weights."))
    with paddle.no_grad():
        mean, logvar = net.encode(paddle.to_tensor(reference["vae.input"]))
        decoded = net.decode(mean)
    np.testing.assert_allclose(mean.numpy(), reference["vae.mean"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(logvar.numpy(), reference["vae.logvar"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(decoded.numpy(), reference["vae.decoded"], atol=1e-4, rtol=1e-4)


def test_unet_matches_diffusers(reference, configs):
    net = nets.UNet2DConditionNet(configs["unet"])
    nets.import_state_dict(net, weights(reference, "unet.weights."))
    with paddle.no_grad():
        out = net(
            paddle.to_tensor(reference["unet.sample"]),
            paddle.to_tensor(reference["unet.timesteps"]),
            paddle.to_tensor(reference["unet.context"]),
        )
    expected = reference["unet.output"]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-3 * np.abs(expected).max())


def test_bert_matches_transformers(reference, configs):
    net = nets.BertNet(configs["bert"])
    nets.import_state_dict(net, weights(reference, "bert.weights."))
    with paddle.no_grad():
        hidden = net(paddle.to_tensor(reference["bert.ids"]))
    np.testing.assert_allclose(hidden.numpy(), reference["bert.hidden"], atol=1e-4, rtol=1e-4)


def test_export_and_import_round_trip_with_torch_layout(reference, configs):
    net = nets.BertNet(configs["bert"])
    state = weights(reference, "bert.weights.")
    nets.import_state_dict(net, state)
    exported = nets.export_state_dict(net)
    assert exported.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(exported[key], value)  # Linear weights back as [out, in]
    with pytest.raises(KeyError, match="missing"):
        nets.import_state_dict(net, {k: v for k, v in state.items() if "pooler" not in k})
