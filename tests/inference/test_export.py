"""The static-graph fast path: export a Layer, run it with Paddle Inference, compare to dygraph."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddiff.execution import (
    AUTO_STATIC_MIN_PARAMETERS,
    InputSpec,
    Network,
    resolve_execution,
    set_execution,
)
from paddiff.execution.cache import ExportCache, fingerprint
from paddiff.execution.predictor import Predictor
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


def _has_bf16() -> bool:
    from paddle.base import core

    return core.supports_bfloat16()


@pytest.mark.skipif(not _has_bf16(), reason="this CPU has neither AVX512-BF16 nor AMX")
def test_bf16_precision_is_close_to_fp32_but_not_equal(layer, tmp_path):
    inputs = _inputs(2)
    expected = layer(*(paddle.to_tensor(a) for a in inputs)).numpy()
    cache = ExportCache(tmp_path, threads=2, precision="bf16")
    (actual,) = cache.predictor(layer, fingerprint(layer), "unet", SPECS)(*inputs)
    error = np.abs(actual - expected).max() / np.abs(expected).max()
    assert 1e-4 < error < 0.03  # bfloat16 keeps 8 bits of mantissa: about 2-3 digits


def test_precision_is_checked_before_anything_runs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="precision= 'fp16' is not one of fp32, bf16"):
        ExportCache(tmp_path, precision="fp16")
    monkeypatch.setenv("PADDIFF_PRECISION", "int8")
    with pytest.raises(ValueError, match=r"\$PADDIFF_PRECISION 'int8'"):
        ExportCache(tmp_path)
    monkeypatch.delenv("PADDIFF_PRECISION")
    from paddiff.loader import load_components

    sd1 = Path(__file__).parents[1] / "fixtures" / "sd" / "sd1"
    with pytest.raises(ValueError, match="precision= 'fp16'"):  # even where it would not apply
        load_components(sd1, execution="dynamic", precision="fp16")
    from paddle.base import core

    monkeypatch.setattr(core, "supports_bfloat16", lambda: False)
    with pytest.raises(ValueError, match="needs a CPU with AVX512-BF16 or AMX"):
        ExportCache(tmp_path, precision="bf16")


def test_cache_exports_once_and_reuses(layer, tmp_path, monkeypatch):
    import paddiff.execution.cache as cache_module

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


def test_fingerprint_changes_with_the_network_code(tmp_path, monkeypatch):
    """A program exported by older code of a network must not be reused after an upgrade."""
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "changing_net.py"
    template = (
        "import paddle\nclass Net(paddle.nn.Layer):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = paddle.nn.Linear(2, 2)\n"
        "    def forward(self, x):\n        return {}\n"
    )
    source.write_text(template.format("self.fc(x)"))
    module = importlib.import_module("changing_net")
    paddle.seed(0)
    before = fingerprint(module.Net())
    source.write_text(template.format("paddle.nn.functional.relu(self.fc(x))"))
    module = importlib.reload(module)
    paddle.seed(0)
    assert fingerprint(module.Net()) != before


def test_missing_program_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported program"):
        Predictor(tmp_path / "nothing")


def _copy_of(layer) -> SmallDenoiser:
    """The same weights in a new Layer: its parameters get other Paddle names, as they would
    in another process."""
    other = SmallDenoiser()
    other.set_state_dict(layer.state_dict())
    assert [p.name for p in other.parameters()] != [p.name for p in layer.parameters()]
    return other


def test_cached_program_serves_a_new_layer_and_weights_come_back(layer, tmp_path, monkeypatch):
    import paddiff.execution.cache as cache_module

    inputs = _inputs(2)
    expected = layer(*(paddle.to_tensor(a) for a in inputs)).numpy()
    Network("unet", _copy_of(layer), SPECS).use_static(ExportCache(tmp_path))
    first = Network("unet", _copy_of(layer), SPECS)
    first.use_static(ExportCache(tmp_path))
    first(*inputs)  # exports

    monkeypatch.setattr(cache_module, "export_layer", lambda *a: pytest.fail("exported twice"))
    fresh = _copy_of(layer)
    runner = Network("unet", fresh, SPECS)
    runner.use_static(ExportCache(tmp_path))
    np.testing.assert_allclose(runner(*inputs), expected, atol=1e-4, rtol=0)
    # one copy of the weights: the Layer gave its copy up to the loaded program ...
    assert not any(p._is_initialized() for p in fresh.parameters())
    # ... and gets it back, mapped by state-dict key, when it runs in the dynamic graph again
    runner.use_dynamic()
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy())
    np.testing.assert_allclose(runner(*inputs), expected, atol=1e-6, rtol=0)


class NotExportable(nn.Layer):
    def __init__(self):
        super().__init__()
        self.scale = nn.Linear(3, 3)

    def forward(self, x):
        if not paddle.in_dynamic_mode():  # stands for any construct that tracing rejects
            raise NotImplementedError("this network runs in the dynamic graph only")
        return self.scale(x)


def test_auto_falls_back_to_the_dynamic_graph_with_a_warning(tmp_path):
    x = np.ones((2, 3), np.float32)
    runner = Network("odd", NotExportable(), [InputSpec("x", (None, 3))])
    expected = runner(x)
    runner.use_static(ExportCache(tmp_path), fallback=True)
    with pytest.warns(UserWarning, match="could not export odd"):
        np.testing.assert_allclose(runner(x), expected)
    assert runner.mode == "dynamic"
    runner.use_static(ExportCache(tmp_path))  # "static" means static: the error surfaces
    with pytest.raises(NotImplementedError, match="dynamic graph only"):
        runner(x)


def test_auto_exports_only_networks_large_enough_to_gain(tmp_path):
    width = math.isqrt(AUTO_STATIC_MIN_PARAMETERS) + 1  # one Linear just over the threshold
    large = Network("large", nn.Linear(width, width), [InputSpec("x", (None, width))])
    small = Network("small", nn.Linear(3, 3), [InputSpec("x", (None, 3))])
    set_execution([large, small], "auto", cache=ExportCache(tmp_path))
    assert (large.mode, small.mode) == ("static", "dynamic")
    set_execution([small], "static", cache=ExportCache(tmp_path))  # asked for explicitly: exported
    assert small.mode == "static"


def test_execution_mode_from_argument_or_environment(monkeypatch):
    monkeypatch.setenv("PADDIFF_EXECUTION", "static")
    assert resolve_execution(None) == "static"
    assert resolve_execution("dynamic") == "dynamic"
    monkeypatch.delenv("PADDIFF_EXECUTION")
    assert resolve_execution(None) == "auto"
    with pytest.raises(ValueError, match="'fast' is not one of auto, static, dynamic"):
        resolve_execution("fast")


FIXTURES = Path(__file__).parents[1] / "fixtures" / "sd"


def _assert_static_matches(component, call, shapes, cache, tolerance=1e-4):
    """`call(shape)` in the dynamic graph, then from exported programs (one program for all
    shapes), then dynamic again with the weights read back from the program."""
    expected = [call(shape) for shape in shapes]
    set_execution(component, "static", cache=cache)
    for shape, want in zip(shapes, expected, strict=True):
        for got, ref in zip(np.atleast_1d(call(shape)), np.atleast_1d(want), strict=True):
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, atol=tolerance, rtol=0)
    set_execution(component, "dynamic")
    for shape, want in zip(shapes, expected, strict=True):
        np.testing.assert_allclose(call(shape), want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fixture", ["sd1", "sd2_v"])
def test_static_unet_matches_dynamic(fixture, tmp_path):
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(FIXTURES / fixture / "unet")
    width = unet.config["cross_attention_dim"]

    def call(shape):
        batch, height, w = shape
        rng = np.random.default_rng(batch * 100 + height)
        latents = rng.standard_normal((batch, unet.in_channels, height, w), dtype=np.float32)
        context = rng.standard_normal((batch, 77, width), dtype=np.float32)
        return unet(latents, 500.0, context)

    # batch 2 and 1, square, non-square and odd latent sizes: one exported program
    _assert_static_matches(unet, call, [(2, 8, 8), (1, 12, 8), (1, 9, 9)], ExportCache(tmp_path))
    assert len(list(tmp_path.rglob("*.pdiparams"))) == 1


def test_static_vae_decoder_and_encoder_match_dynamic(tmp_path):
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(FIXTURES / "sd1" / "vae")
    rng = np.random.default_rng(1)

    def call(shape):
        batch, size = shape
        latents = rng.standard_normal((batch, 4, size, size), dtype=np.float32)
        images = np.tanh(rng.standard_normal((batch, 3, 4 * size, 4 * size), dtype=np.float32))
        return [vae.decode(latents), *vae.posterior(images)]

    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    expected = [call((2, 8)), call((1, 6))]
    rng.bit_generator.state = state
    set_execution(vae, "static", cache=ExportCache(tmp_path))
    for want, got in zip(expected, [call((2, 8)), call((1, 6))], strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    programs = sorted(p.parent.name.split("-")[0] for p in tmp_path.rglob("*.pdiparams"))
    assert programs == ["vae_decoder", "vae_encoder"]


def test_static_clip_text_encoder_matches_dynamic(tmp_path):
    from paddiff.plugins.text_encoders.clip import CLIPTextModel

    text = CLIPTextModel.from_pretrained(FIXTURES / "sd1" / "text_encoder")
    prompts = {1: ["a red cube"], 2: ["a photo of a cat", ""]}
    _assert_static_matches(text, lambda n: text.encode(prompts[n]), [2, 1], ExportCache(tmp_path))


def test_loader_switches_components_and_rejects_unknown_modes(tmp_path):
    from paddiff.loader import load_components

    with pytest.raises(ValueError, match="'quick' is not one of"):
        load_components(FIXTURES / "sd1", execution="quick")
    components = load_components(FIXTURES / "sd1", execution="static", cache_dir=tmp_path)
    for name in ("denoiser", "vae", "text_encoder"):
        assert components[name].runner.mode == "static", name
    assert components["denoiser"].runner._cache.root == tmp_path
    dynamic = load_components(FIXTURES / "sd1")  # $PADDIFF_EXECUTION=dynamic in tests
    assert dynamic["denoiser"].runner.mode == "dynamic"


def test_export_command_writes_a_folder_generation_uses_as_its_cache(tmp_path, monkeypatch):
    import json

    import paddiff.execution.cache as cache_module
    from paddiff.cli import main
    from paddiff.loader import load_components

    out = tmp_path / "exported"
    assert main(["export", str(FIXTURES / "sd1"), str(out), "--height", "64", "--width", "64"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    programs = manifest["programs"]
    assert sorted(programs) == ["text_encoder", "unet", "vae_decoder", "vae_encoder"]
    for label, entry in programs.items():
        assert entry["max_abs_error"] < 1e-4, label
        assert (out / entry["program"]).with_name("program.pdiparams").is_file()

    # a whole generation from the exported folder: no export, and the same image within 2/255
    monkeypatch.setattr(cache_module, "export_layer", lambda *a: pytest.fail("exported again"))
    static = _generate(load_components(FIXTURES / "sd1", execution="static", cache_dir=out))
    dynamic = _generate(load_components(FIXTURES / "sd1", execution="dynamic"))
    assert static.shape == dynamic.shape
    assert np.abs(static - dynamic).max() / 2 <= 2 / 255  # images in [-1, 1]


def _generate(components, steps: int = 4) -> np.ndarray:
    """Text -> `steps` guided sampling steps -> image, through the pipeline's sampling path."""
    from paddiff.randomness import Generator
    from paddiff.sampling import plan_sampling
    from paddiff.sampling.denoiser import GuidedNetwork

    unet, vae = components["denoiser"], components["vae"]
    context = components["text_encoder"].encode(["", "a red cube on a blue floor"])
    plan = plan_sampling(components["scheduler"], steps)
    network = GuidedNetwork(unet, [context[1:]], [context[:1]], guidance_scale=7.5)
    latents = plan.initial(Generator(0).randn((1, unet.in_channels, 8, 8)))
    latents = plan.sample(network, unet.prediction_type, latents, noise=Generator(1))
    return vae.decode(latents / vae.scaling_factor)


@pytest.mark.parametrize("folder", ["taiyi_like", "altdiffusion_like"])
def test_static_bert_and_xlmr_text_encoders_match_dynamic(folder, tmp_path):
    import json

    import paddiff

    model = Path(__file__).parents[1] / "fixtures" / "chinese" / folder
    name = json.loads((model / "model_index.json").read_text())["text_encoder"][1]
    encoder = paddiff.get("text_encoders", name).from_pretrained(model / "text_encoder")
    prompts = {2: ["一只猫", "a red cube on a table"], 1: ["山水画"]}
    _assert_static_matches(
        encoder, lambda n: encoder.encode(prompts[n]), [2, 1], ExportCache(tmp_path)
    )


EMBEDDED = Path(__file__).parents[2] / "plugins" / "embedded" / "model"


@pytest.mark.skipif(not (EMBEDDED / "model_index.json").is_file(), reason="no embedded model")
def test_static_embedded_model_matches_dynamic(tmp_path):
    from paddiff.loader import load_components

    static = load_components(EMBEDDED, execution="static", cache_dir=tmp_path)
    dynamic = load_components(EMBEDDED, execution="dynamic")
    prompts = ["", "一只红色的猫"]
    context = dynamic["text_encoder"].encode(prompts)
    np.testing.assert_allclose(static["text_encoder"].encode(prompts), context, atol=1e-4, rtol=0)
    unet = dynamic["denoiser"]
    latents = np.random.default_rng(0).standard_normal((2, unet.in_channels, 8, 8), np.float32)
    np.testing.assert_allclose(
        static["denoiser"](latents, 500.0, context), unet(latents, 500.0, context), atol=1e-4
    )
    np.testing.assert_allclose(
        static["vae"].decode(latents[:1]), dynamic["vae"].decode(latents[:1]), atol=1e-4
    )
    image = _generate(dynamic)
    assert np.abs(_generate(static) - image).max() / 2 <= 2 / 255


@pytest.mark.slow
def test_static_full_size_sd15_matches_dynamic(tmp_path):
    """SD 1.5-size UNet, VAE decoder and text encoder (PADDIFF_FULLSIZE_DIR, see
    tests/models/test_parity.py), exported with dynamic shapes: within 1e-4 of the dynamic graph
    at 32x32 latents, batch 2. About 3 minutes and 8 GB of memory on 2 cores."""
    import os

    from paddiff.plugins.denoisers.unet import UNet2DConditionModel
    from paddiff.plugins.text_encoders.clip import CLIPTextModel
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    folder = os.environ.get("PADDIFF_FULLSIZE_DIR")
    if not folder:
        pytest.skip("set PADDIFF_FULLSIZE_DIR (see tests/models/test_parity.py)")
    cache = ExportCache(tmp_path)
    rng = np.random.default_rng(0)
    text = CLIPTextModel.from_pretrained(Path(folder) / "text_encoder")
    prompts = ["", "a watercolour of a lighthouse at dusk"]
    _assert_static_matches(text, lambda _: text.encode(prompts), [None], cache)
    context = text.encode(prompts)
    unet = UNet2DConditionModel.from_pretrained(Path(folder) / "unet")
    latents = rng.standard_normal((2, 4, 32, 32), dtype=np.float32)
    _assert_static_matches(unet, lambda _: unet(latents, 500.0, context), [None], cache)
    vae = AutoencoderKL.from_pretrained(Path(folder) / "vae")
    _assert_static_matches(vae, lambda _: vae.decode(latents[:1]), [None], cache)


def test_generate_command_passes_the_execution_mode_to_the_loader(monkeypatch, tmp_path):
    import paddiff
    import paddiff.pipeline
    from paddiff.cli import main

    seen = {}

    def load(location=None, safety_filters=None, **options):
        seen.update(options)
        raise ValueError("stop here")

    monkeypatch.setattr(paddiff.pipeline, "load_pipeline", load)
    monkeypatch.setitem(vars(paddiff), "load_pipeline", load)
    args = ["generate", "a cat", "--model", str(FIXTURES / "sd1"), "-o", str(tmp_path)]
    assert main([*args, "--execution", "static"]) == 1
    assert seen["execution"] == "static"


def test_static_safety_checker_scores_match_dynamic(tmp_path):
    from paddiff.plugins.safety.image_checker import StableDiffusionSafetyChecker
    from PIL import Image

    safety = Path(__file__).parents[1] / "fixtures" / "safety"
    checker = StableDiffusionSafetyChecker.from_pretrained(
        safety / "tiny_checker" / "safety_checker"
    )
    images = [Image.open(f) for f in sorted((safety / "images").glob("*.png"))[:3]]
    expected = checker.scores(images)
    set_execution(checker, "static", cache=ExportCache(tmp_path))
    for got, want in zip(checker.scores(images), expected, strict=True):
        for key in ("special_scores", "concept_scores"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-4, rtol=0)
        assert got["bad_concepts"] == want["bad_concepts"]


def test_load_pipeline_switches_the_image_checker_too(tmp_path):
    from paddiff.pipeline import load_pipeline
    from paddiff.plugins.safety.image_checker import StableDiffusionSafetyChecker

    safety = Path(__file__).parents[1] / "fixtures" / "safety" / "tiny_checker" / "safety_checker"
    checker = StableDiffusionSafetyChecker.from_pretrained(safety)
    pipeline = load_pipeline(
        FIXTURES / "sd1", safety_filters=[checker], execution="static", cache_dir=tmp_path
    )
    assert checker.runner.mode == pipeline.denoiser.runner.mode == "static"


def test_a_failed_export_leaves_nothing_for_the_next(tmp_path):
    """Paddle's tracer keeps the parameters of a trace that raised under id(program); a later
    program given the same id inherited them and jit.save failed (KeyError naming one)."""
    from paddiff.execution.export import export_layer, program_files
    from paddle.jit.dy2static import parameter_recorder

    class Fails(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.linear = paddle.nn.Linear(4, 4)

        def forward(self, x):
            self.linear(x)
            raise RuntimeError("this layer cannot be traced")

    spec = [InputSpec("x", (None, 4))]
    with pytest.raises(RuntimeError, match="cannot be traced"):
        export_layer(Fails(), spec, tmp_path / "fails" / "program")
    assert not parameter_recorder._global_parameter_recorder.params_dict  # nothing held over
    good = paddle.nn.Linear(4, 4)
    prefix = export_layer(good, spec, tmp_path / "good" / "program")
    assert program_files(prefix)[0].exists()
