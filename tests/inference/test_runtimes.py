"""Runtime back ends (`paddiff.runtimes`): each one that runs here gives the dynamic graph's
numbers on a tiny UNet, and a back end that cannot run falls back to Paddle Inference, saying so."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from paddiff import registry
from paddiff.execution import set_execution
from paddiff.execution.runtimes import PaddleInference, get_runtime
from paddiff.plugins.runtimes.openvino import OpenVINO, ir_path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "sd" / "sd2_v"
openvino_missing = OpenVINO.unavailable()
needs_openvino = pytest.mark.skipif(bool(openvino_missing), reason=str(openvino_missing))


def _unet():
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(FIXTURE / "unet")


def _inputs(batch: int = 2, size: int = 8):
    rng = np.random.default_rng(size)
    return (
        rng.standard_normal((batch, 4, size, size), dtype=np.float32),
        np.array([999.0, 1.0][:batch], dtype=np.float32),
        rng.standard_normal((batch, 7, 32), dtype=np.float32),
    )


@pytest.fixture(scope="module")
def dynamic_outputs():
    unet = _unet()
    return {size: unet(*_inputs(size=size)) for size in (8, 6)}


def test_both_back_ends_are_entry_points_of_the_runtimes_group():
    records = registry.default_registry().list("runtimes")
    assert {r.name for r in records} >= {"paddle-inference", "openvino"}
    assert all(r.distribution == "paddiff" for r in records)
    loaded = registry.default_registry().get("runtimes", "openvino")
    assert loaded is OpenVINO


@pytest.mark.parametrize(
    "runtime",
    ["paddle-inference", pytest.param("openvino", marks=needs_openvino)],
)
def test_back_end_matches_the_dynamic_graph(runtime, tmp_path, dynamic_outputs):
    unet = _unet()
    set_execution(unet, "static", cache_dir=tmp_path, runtime=runtime)
    # two latent sizes: one program serves both (OpenVINO compiles one model per shape)
    for size in (8, 6, 8):
        actual = unet(*_inputs(size=size))
        np.testing.assert_allclose(actual, dynamic_outputs[size], atol=1e-4, rtol=0)


@needs_openvino
def test_openvino_keeps_its_converted_model_beside_the_program(tmp_path, monkeypatch):
    unet = _unet()
    set_execution(unet, "static", cache_dir=tmp_path, runtime="openvino")
    first = unet(*_inputs())
    (program,) = tmp_path.glob("*/unet-*-portable/program.json")
    prefix = program.with_suffix("")
    assert ir_path(prefix).is_file() and ir_path(prefix).with_suffix(".bin").is_file()
    # its own export: no Paddle-only fused attention, which converters do not know
    assert "self_dp_attention" not in program.read_text(encoding="utf-8")

    # a new process (a new cache object) reads the IR instead of converting again
    from paddiff.plugins.runtimes import openvino

    def no_conversion(*args):
        raise AssertionError("converted again although the IR was cached")

    monkeypatch.setattr(openvino, "_run_converter", no_conversion)
    again = _unet()
    set_execution(again, "static", cache_dir=tmp_path, runtime="openvino")
    np.testing.assert_array_equal(again(*_inputs()), first)

    # compiling gives back the IR's mapped pages (the compiled model packs its own copy of the
    # big weights; at SD 1.5 size no page is read again, docs/performance.md)
    from support.processes import resident_bytes

    program = openvino.OpenVINOProgram(ir_path(prefix), 2, "fp32")
    program._request_for(tuple(a.shape for a in _inputs(size=6)))
    assert resident_bytes(ir_path(prefix).with_suffix(".bin")) == 0


def _has_bf16() -> bool:
    from paddle.base import core

    return core.supports_bfloat16()


@needs_openvino
@pytest.mark.skipif(not _has_bf16(), reason="this CPU has neither AVX512-BF16 nor AMX")
def test_openvino_bf16_reads_float16_weights_and_stays_close(tmp_path, dynamic_outputs):
    """bf16 runs read an IR with half the bytes of weights (so one process does not hold the
    float32 IR beside the packed bfloat16 copy), and the result is bf16-close to float32."""
    unet = _unet()
    set_execution(unet, "static", cache_dir=tmp_path, runtime="openvino", precision="bf16")
    actual = unet(*_inputs())
    expected = dynamic_outputs[8]
    error = np.abs(actual - expected).max() / np.abs(expected).max()
    # bfloat16 arithmetic (2-3 digits; OpenVINO runs more of the network in it than Paddle
    # Inference does) on float16-stored weights; not float32's 1e-6
    assert 1e-4 < error < 0.05
    (program,) = tmp_path.glob("*/unet-*-portable/program.json")
    half, full = ir_path(program.with_suffix(""), "bf16"), ir_path(program.with_suffix(""))
    assert half.is_file() and not full.exists()  # converted straight to float16
    set_execution(unet, "static", cache_dir=tmp_path, runtime="openvino")  # then a float32 run
    np.testing.assert_allclose(unet(*_inputs()), expected, atol=1e-4, rtol=0)
    weights = [p.with_suffix(".bin").stat().st_size for p in (half, full)]
    assert 0.45 < weights[0] / weights[1] < 0.55, weights


def _hide(monkeypatch, package: str) -> None:
    """Make `package` look uninstalled to the back end's availability check."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )


def test_missing_back_end_falls_back_to_paddle_inference_with_a_warning(
    monkeypatch, tmp_path, dynamic_outputs
):
    _hide(monkeypatch, "openvino")
    assert "openvino package is not installed" in OpenVINO.unavailable()
    with pytest.warns(
        UserWarning, match=r"runtime 'openvino' cannot run here .*paddiff\[openvino\]"
    ):
        runtime = get_runtime("openvino")
    assert isinstance(runtime, PaddleInference)

    # the same through set_execution: the model still runs, on Paddle Inference's own programs
    unet = _unet()
    with pytest.warns(UserWarning, match="running exported programs with paddle-inference"):
        set_execution(unet, "static", cache_dir=tmp_path, runtime="openvino")
    np.testing.assert_allclose(unet(*_inputs()), dynamic_outputs[8], atol=1e-4, rtol=0)
    assert not list(tmp_path.glob("*/*-portable"))


def test_auto_picks_the_first_preference_that_can_run(monkeypatch):
    from paddiff.execution import runtimes

    monkeypatch.delenv("PADDIFF_RUNTIME", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns: it only picks what can run
        assert get_runtime().name == "paddle-inference"  # today's CPU default (docs/performance.md)
        monkeypatch.setitem(runtimes.AUTO_PREFERENCE, "cpu", ("openvino", "paddle-inference"))
        if not openvino_missing:
            assert get_runtime("auto").name == "openvino"
        _hide(monkeypatch, "paddle2onnx")
        assert get_runtime("auto").name == "paddle-inference"


def test_the_environment_variable_chooses_and_a_wrong_name_is_refused(monkeypatch):
    monkeypatch.setenv("PADDIFF_RUNTIME", "paddle-inference")
    assert get_runtime().name == "paddle-inference"
    monkeypatch.setenv("PADDIFF_RUNTIME", "openvin")
    with pytest.raises(ValueError, match=r"\$PADDIFF_RUNTIME 'openvin' is not a runtime.*openvino"):
        get_runtime()
    with pytest.raises(ValueError, match=r"runtime= 'tensorrt' is not a runtime"):
        get_runtime("tensorrt")


def test_load_components_refuses_an_unknown_runtime_before_loading(monkeypatch):
    from paddiff.loader import load_components

    monkeypatch.delenv("PADDIFF_RUNTIME", raising=False)
    with pytest.raises(ValueError, match="runtime= 'onnx' is not a runtime"):
        load_components(FIXTURE, runtime="onnx")


@needs_openvino
def test_a_program_openvino_cannot_convert_runs_on_paddle_inference(tmp_path, dynamic_outputs):
    """The ordinary export holds Paddle's fused attention, which paddle2onnx does not know: it
    aborts (SIGABRT), in the converter's own process, and the program runs on Paddle Inference."""
    from paddiff.execution.cache import ExportCache
    from paddiff.execution.export import program_files

    prefix = _unet().runner.export(ExportCache(tmp_path, runtime="paddle-inference"))
    if "self_dp_attention" not in program_files(prefix)[0].read_text(encoding="utf-8"):
        pytest.skip("this machine exports plain attention, which converts")
    with pytest.warns(UserWarning, match=r"could not convert .*; running unet-.* with paddle-inf"):
        program = OpenVINO().load(prefix, threads=2)
    (actual,) = program(*_inputs())
    np.testing.assert_allclose(actual, dynamic_outputs[8], atol=1e-4, rtol=0)
    assert not ir_path(prefix).exists()
