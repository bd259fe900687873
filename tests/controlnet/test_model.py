"""ControlNetModel against diffusers' on the tiny fixture control nets, and its file formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from paddiff.control import ArchitectureMismatchError, guess_mode_scales, load_controlnet

from support.pipeline_fixtures import MODELS

FIXTURES = MODELS.parent / "controlnet"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "residuals.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def unet_config():
    return json.loads((MODELS / "sd1" / "unet" / "config.json").read_text())


def residuals(net, ref):
    return net(ref["sample"], ref["timesteps"], ref["context"], ref["control"])


def assert_close(downs, mid, ref, tag, scales=None):
    scales = np.ones(len(downs) + 1, np.float32) if scales is None else scales
    assert len(downs) == len([k for k in ref if k.startswith(f"{tag}_down_")])
    for i, d in enumerate(downs):
        np.testing.assert_allclose(d * scales[i], ref[f"{tag}_down_{i}"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(mid * scales[-1], ref[f"{tag}_mid"], atol=TOLERANCE, rtol=0)


def test_residuals_match_diffusers(reference, unet_config):
    net = load_controlnet(FIXTURES / "cn_a", like=unet_config)
    downs, mid = residuals(net, reference)
    assert np.abs(mid).max() > 0.1  # the fixture's zero convolutions are not zero
    assert_close(downs, mid, reference, "plain")
    # guess mode: diffusers scales the residuals 0.1 ... 1.0 times the conditioning scale
    assert_close(downs, mid, reference, "guess", guess_mode_scales(len(downs) + 1, 0.7))


@pytest.mark.parametrize(
    "source, variant",
    [
        ("cn_a", "fp16"),
        ("cn_a_original.safetensors", None),
        ("cn_a_original.pth", None),  # fp16, through the restricted unpickler
    ],
)
def test_other_files_load_to_the_same_numbers(reference, unet_config, source, variant):
    net = load_controlnet(FIXTURES / source, like=unet_config, variant=variant)
    downs, mid = residuals(net, reference)
    assert_close(downs, mid, reference, "plain")
    assert net.name == source.split(".")[0] and len(net.short_hash) == 8


def test_control_net_for_another_base_is_refused(unet_config):
    with pytest.raises(ArchitectureMismatchError) as info:
        load_controlnet(FIXTURES / "sd2_like", like=unet_config)
    assert "cross_attention_dim 1024" in str(info.value)
    assert "cross_attention_dim 32" in str(info.value)


def test_single_file_of_a_whole_model_is_not_a_control_net():
    from paddiff.weights import WeightsFormatError

    with pytest.raises(WeightsFormatError, match="not a control net"):
        load_controlnet(MODELS.parent / "weights" / "sd1.ckpt")


def test_exported_program_matches_the_dynamic_graph(reference, unet_config, tmp_path):
    """The control net runs as an exported program (paddiff.execution) to the same numbers."""
    from paddiff.execution import set_execution

    net = load_controlnet(FIXTURES / "cn_a", like=unet_config)
    set_execution(net, "static", tmp_path)
    assert net.runner.mode == "static"
    downs, mid = residuals(net, reference)
    assert_close(downs, mid, reference, "plain")
