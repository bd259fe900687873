"""`load_components` end to end: every SD fixture through every weight format, against diffusers.

The fixtures in tests/fixtures/sd/<name>/ are diffusers folders with reference outputs. Each
test derives another format from them in a temporary folder (see tests/support/weights_formats.py), loads
it, and compares UNet output, VAE encode/decode and text-encoder hidden states with the
reference (max abs error <= 1e-4).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from paddiff.convert.legacy_names import OLD_VAE_ATTENTION
from paddiff.convert.original_sd import convert_checkpoint
from paddiff.loader import load_components, save_components
from paddiff.registry import Registry, UnknownPluginError
from paddiff.weights import (
    StateDict,
    WeightsFormatError,
    load_component_weights,
    load_state_dict,
    save_state_dict,
)

from support.fixture_configs import SD_VARIANTS, SINGLE_FILES
from support.helpers import ROOT
from support.weights_formats import (
    add_fp16_variant,
    as_bin,
    as_sharded,
    copy_model,
    replace_weights,
    to_original,
    to_paddlenlp_names,
    with_full_clip_vocabulary,
    write_torch_zip,
)

paddle = pytest.importorskip("paddle")
from paddiff.plugins.nn.state_dict import StateDictMismatchError  # noqa: E402

SD = ROOT / "tests" / "fixtures" / "sd"
WEIGHTS = ROOT / "tests" / "fixtures" / "weights"
MODELS = SD_VARIANTS  # every tiny fixture folder
TOLERANCE = 1e-4
PROMPTS = json.loads((SD / "prompts.json").read_text(encoding="utf-8"))


class StubScheduler:
    """Stands in for the real schedulers, which live on another branch; keeps its config."""

    def __init__(self, config):
        self.config, self.timesteps, self.init_noise_sigma, self.order = config, None, 1.0, 1

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def set_timesteps(self, n): ...
    def scale_model_input(self, sample, t): ...
    def step(self, out, t, sample, generator=None): ...
    def add_noise(self, original, noise, timesteps): ...


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry()
    for name in ("PNDMScheduler", "EulerDiscreteScheduler", "DDIMScheduler"):
        registry.register("schedulers", name, StubScheduler)
    return registry


def unknowable_config(model: Path) -> dict:
    """The config entries that tensor shapes cannot reveal (the tiny fixtures are not SD-sized)."""
    unet = json.loads((model / "unet" / "config.json").read_text())
    vae = json.loads((model / "vae" / "config.json").read_text())
    text = json.loads((model / "text_encoder" / "config.json").read_text())
    keys = ("attention_head_dim", "norm_num_groups", "upcast_attention", "sample_size")
    return {
        "denoiser": {k: unet[k] for k in keys},
        "vae": {k: vae[k] for k in ("norm_num_groups", "scaling_factor", "sample_size")},
        "text_encoder": {"num_attention_heads": text["num_attention_heads"]},
        "scheduler": json.loads((model / "scheduler" / "scheduler_config.json").read_text()),
    }


# -- the formats, each made from a fixture folder in tmp ---------------------------------------


def make_diffusers(model: Path, tmp: Path) -> dict:
    return {"location": model}


def make_bin(model: Path, tmp: Path) -> dict:
    replace_weights(copy_model(model, tmp / "bin"), as_bin)
    return {"location": tmp / "bin"}


def make_sharded(model: Path, tmp: Path) -> dict:
    replace_weights(copy_model(model, tmp / "sharded"), as_sharded)
    return {"location": tmp / "sharded"}


def make_ppdiffusers(model: Path, tmp: Path, registry: Registry, safetensors=False) -> dict:
    """Paddle-layout weights as ppdiffusers writes them: paddle.save of each network (or
    Paddle-layout safetensors), the text encoder under paddlenlp's module names."""
    target = copy_model(model, tmp / "pp")
    loaded = load_components(model, registry=registry)
    for name, sub in [("denoiser", "unet"), ("vae", "vae"), ("text_encoder", "text_encoder")]:
        for old in (target / sub).glob("*.safetensors"):
            old.unlink()
        state = loaded[name].net.state_dict()
        if name == "text_encoder":
            state = to_paddlenlp_names(state)
        if not safetensors:
            paddle.save(state, str(target / sub / "model_state.pdparams"))
            continue
        arrays = {k: v.numpy() for k, v in state.items()}
        if name == "text_encoder":  # paddlenlp's name; its "np" metadata marks Paddle layout
            save_state_dict(arrays, target / sub / "model.safetensors", metadata={"format": "np"})
        else:
            save_state_dict(arrays, target / sub / "diffusion_paddle_model.safetensors")
    index = json.loads((target / "model_index.json").read_text())
    index["unet"][0] = index["vae"][0] = "ppdiffusers"
    (target / "model_index.json").write_text(json.dumps(index))
    return {"location": target}


def make_single(suffix: str):
    def make(model: Path, tmp: Path) -> dict:
        path = tmp / f"{model.name}{suffix}"
        state = to_original(model)
        if suffix == ".ckpt":
            write_torch_zip(state, path, wrap_lightning=True)
        else:
            save_state_dict(state, path)
        return {
            "location": path,
            "tokenizer": model / "tokenizer",
            "config": unknowable_config(model),
        }

    return make


def make_saved(model: Path, tmp: Path, registry: Registry) -> dict:
    save_components(load_components(model, registry=registry), tmp / "saved")
    return {"location": tmp / "saved"}


FORMATS = {
    "diffusers": make_diffusers,
    "bin": make_bin,
    "sharded": make_sharded,
    "ppdiffusers": make_ppdiffusers,
    "ppdiffusers-safetensors": lambda model, tmp, registry: make_ppdiffusers(
        model, tmp, registry, safetensors=True
    ),
    "single.safetensors": make_single(".safetensors"),
    "single.ckpt": make_single(".ckpt"),
    "paddiff-saved": make_saved,
}


def assert_close(actual, expected, what):
    error = float(np.abs(np.asarray(actual) - expected).max())
    assert error <= TOLERANCE, f"{what}: max abs error {error:.3g} > {TOLERANCE}"


def assert_matches_reference(components, model: Path):
    ref = np.load(model / "reference.npz")
    unet = components["denoiser"]
    for case in ("even", "odd"):
        out = unet(
            ref[f"unet_{case}_latents"], ref[f"unet_{case}_timesteps"], ref[f"unet_{case}_context"]
        )
        assert_close(out, ref[f"unet_{case}_output"], f"UNet ({case})")
    vae = components["vae"]
    assert_close(vae.encode(ref["vae_images"]), ref["vae_mean"], "VAE encode")
    assert_close(vae.decode(ref["vae_latents"]), ref["vae_decoded"], "VAE decode")
    encoder = components["text_encoder"]
    assert_close(encoder.encode(PROMPTS), ref["text_hidden_states"], "text encoder")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("name", MODELS)
def test_every_format_matches_the_reference(name, fmt, tmp_path, registry):
    make = FORMATS[fmt]
    model = SD / name
    if fmt in ("ppdiffusers", "ppdiffusers-safetensors", "paddiff-saved"):
        spec = make(model, tmp_path, registry)
    else:
        spec = make(model, tmp_path)
    components = load_components(spec.pop("location"), registry=registry, **spec)
    assert_matches_reference(components, model)
    expected_type = "v_prediction" if name == "sd2_v" else "epsilon"
    assert components["denoiser"].prediction_type == expected_type


def net_params(component) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in component.net.state_dict().items()}


def test_fp16_variant_loads_the_half_precision_files(tmp_path, registry):
    model = copy_model(SD / "sd1", tmp_path / "m")
    add_fp16_variant(model)
    full = load_components(model, registry=registry)
    half = load_components(model, variant="fp16", registry=registry)
    for name in ("denoiser", "vae", "text_encoder"):
        want = {
            k: v.astype(np.float16).astype(np.float32) for k, v in net_params(full[name]).items()
        }
        got = net_params(half[name])
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert not all(np.array_equal(got[k], net_params(full[name])[k]) for k in want)


def test_missing_variant_is_reported_with_the_files_present(tmp_path, registry):
    with pytest.raises(FileNotFoundError, match=r"no weights in .*unet.*fp16.*holds: config.json"):
        load_components(SD / "sd1", variant="fp16", registry=registry)


def test_save_components_round_trips_exactly(tmp_path, registry):
    first = load_components(SD / "sd2_v", registry=registry)
    save_components(first, tmp_path / "saved")
    second = load_components(tmp_path / "saved", registry=registry)
    for name in ("denoiser", "vae", "text_encoder"):
        a, b = net_params(first[name]), net_params(second[name])
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a), name
    assert second["scheduler"].config["prediction_type"] == "v_prediction"
    assert np.array_equal(
        first["text_encoder"].tokenize(PROMPTS), second["text_encoder"].tokenize(PROMPTS)
    )


def test_paddlenlp_names_mean_what_paddlenlp_computes():
    # The table is checked against paddlenlp's own CLIPTextModel: same keys and shapes, and with
    # the fixture's weights under those names it computes the reference hidden states.
    from paddlenlp.transformers import CLIPTextConfig
    from paddlenlp.transformers import CLIPTextModel as PaddleNLPCLIP

    config = json.loads((SD / "sd2_v" / "text_encoder" / "config.json").read_text())
    net = PaddleNLPCLIP(CLIPTextConfig(**config))
    net.eval()
    encoder = load_components(SD / "sd2_v", registry=Registry(), scheduler=object())["text_encoder"]
    state = to_paddlenlp_names(encoder.net.state_dict())
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items() if "position_ids" not in k}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    net.set_state_dict(state)
    ref = np.load(SD / "sd2_v" / "reference.npz")
    with paddle.no_grad():
        hidden = net(paddle.to_tensor(ref["token_ids"]))[0].numpy()
    assert_close(hidden, ref["text_hidden_states"], "paddlenlp CLIPTextModel")


def test_pre_014_vae_attention_names_load(tmp_path, registry):
    model = copy_model(SD / "sd1", tmp_path / "old")
    folder = model / "vae"
    state = dict(load_component_weights(folder))
    renamed = {}
    for key, value in state.items():
        for new, old in OLD_VAE_ATTENTION:
            key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        renamed[key] = value
    assert any(".query." in k for k in renamed)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    save_state_dict(renamed, folder / "diffusion_pytorch_model.safetensors")
    assert_matches_reference(load_components(model, registry=registry), SD / "sd1")


def test_scheduler_aliases_select_the_real_schedulers():
    components = load_components(SD / "sd1", scheduler="DPM++ 2M Karras")
    scheduler = components["scheduler"]
    assert scheduler.name == "DPMSolverMultistepScheduler"  # a sampler function, by name
    assert scheduler.config["use_karras_sigmas"] is True
    assert scheduler.config["beta_schedule"] == "scaled_linear"  # from the model's config


# -- single files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, file", list(SINGLE_FILES.items()))
def test_test_time_single_files_equal_the_diffusers_verified_ones(name, file):
    # tests/fixtures/weights/<file> was read back by diffusers' from_single_file (make_formats.py);
    # the helper that makes the other single files at test time must write the same layout.
    committed = load_state_dict(WEIGHTS / file)
    made = to_original(SD / name)
    unused = ("resblocks.2.", "text_projection")  # SD 2's unused last layer: random in the file
    keys = {k for k in committed if not any(u in k for u in unused)}
    assert keys == {k for k in made if not any(u in k for u in unused)}
    for key in keys:
        np.testing.assert_array_equal(committed[key], made[key], err_msg=key)


@pytest.mark.parametrize("name, file", list(SINGLE_FILES.items()))
def test_committed_single_files_load_to_the_reference(name, file, registry):
    components = load_components(
        WEIGHTS / file,
        registry=registry,
        tokenizer=SD / name / "tokenizer",
        config=unknowable_config(SD / name),
    )
    assert_matches_reference(components, SD / name)


@pytest.mark.parametrize("name", MODELS)
def test_inferred_configs_match_the_folders(name):
    parts = convert_checkpoint(
        load_state_dict(WEIGHTS / "sd1.ckpt") if name == "sd1" else _original(name)
    )
    unknowable = unknowable_config(SD / name)
    for part, sub in [("denoiser", "unet"), ("vae", "vae"), ("text_encoder", "text_encoder")]:
        want = json.loads((SD / name / sub / "config.json").read_text())
        for key, value in parts[part].config.items():
            if key in want and key not in unknowable[part] and not key.endswith("token_id"):
                assert _same(value, want[key]), (part, key, value, want[key])


def _same(a, b) -> bool:
    return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b


def _original(name):
    return StateDict.from_arrays(to_original(SD / name))


def test_sd_sized_head_counts_are_inferred():
    # SD 2.x: 1024-wide context -> 64-channel heads; SD 1.x -> 8 heads everywhere
    from paddiff.convert.original_unet import unet_config

    shapes = {
        "input_blocks.0.0.weight": (320, 4, 3, 3),
        "input_blocks.1.0.out_layers.3.weight": (320, 320, 3, 3),
        "input_blocks.1.1.proj_in.weight": (320, 320),
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "input_blocks.2.0.op.weight": (320, 320, 3, 3),
        "input_blocks.3.0.out_layers.3.weight": (640, 640, 3, 3),
        "out.2.weight": (4, 320, 3, 3),
    }
    config = unet_config(shapes)
    assert config["attention_head_dim"] == [5, 10]
    assert config["use_linear_projection"] and config["cross_attention_dim"] == 1024
    shapes["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = (320, 768)
    assert unet_config(shapes)["attention_head_dim"] == 8


def test_single_file_configs_can_come_from_a_diffusers_folder(registry):
    model = SD / "inpaint"
    components = load_components(
        WEIGHTS / "sd1.ckpt",
        registry=registry,
        tokenizer=SD / "sd1" / "tokenizer",
        config=SD / "sd1",
    )
    assert_matches_reference(components, SD / "sd1")
    assert components["scheduler"].config["_class_name"] == "PNDMScheduler"  # the folder's
    with pytest.raises(
        ValueError, match=r"config= \(--config\) applies to single-file checkpoints"
    ):
        load_components(model, registry=registry, config=SD / "sd1")


def test_fp16_single_files_load_into_float32_networks(tmp_path, registry):
    # Most single files in the wild are float16.
    half = {
        k: v.astype(np.float16) if v.dtype == np.float32 else v
        for k, v in to_original(SD / "sd1").items()
    }
    save_state_dict(half, tmp_path / "half.safetensors")
    full = load_components(SD / "sd1", registry=registry)
    loaded = load_components(
        tmp_path / "half.safetensors",
        registry=registry,
        tokenizer=SD / "sd1" / "tokenizer",
        config=unknowable_config(SD / "sd1"),
    )
    for name in ("denoiser", "vae", "text_encoder"):
        want = net_params(full[name])
        for key, value in net_params(loaded[name]).items():
            assert value.dtype == np.float32
            np.testing.assert_array_equal(value, want[key].astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("name, pad_id", [("sd1", 49407), ("sd2_v", 0)])
def test_single_file_without_a_tokenizer_gets_sd_clip_tokenizer(name, pad_id, registry, tmp_path):
    """A1111-style files carry no tokenizer: SD 1.x gets CLIP's vocabulary padded with
    <|endoftext|>, SD 2.x (OpenCLIP) padded with "!", built from the shipped BPE file."""
    path = tmp_path / "model.safetensors"
    save_state_dict(with_full_clip_vocabulary(to_original(SD / name)), path)
    components = load_components(path, registry=registry, config=unknowable_config(SD / name))
    ids = components["text_encoder"].tokenize(["a photograph of an astronaut riding a horse"])
    assert ids[0, :10].tolist() == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert ids[0, -1] == pad_id
    assert components["text_encoder"].encode(["a cat"]).shape == (1, 77, 32)


def test_single_file_with_a_cut_vocabulary_asks_for_its_tokenizer(registry):
    with pytest.raises(ValueError, match="1514-token vocabulary, not the 49408.*--tokenizer"):
        load_components(WEIGHTS / "sd1.ckpt", registry=registry)
    # a config folder's own tokenizer/ is used when no tokenizer is given
    components = load_components(WEIGHTS / "sd1.ckpt", registry=registry, config=SD / "sd1")
    assert len(components["text_encoder"].tokenizer.vocab) == 1514


def test_a_tokenizer_that_does_not_fit_the_text_encoder_is_refused(registry, tmp_path):
    from paddiff.plugins.text_encoders.clip_tokenizer import CLIPTokenizer

    CLIPTokenizer.shipped().save_pretrained(tmp_path / "tokenizer")
    with pytest.raises(ValueError, match="ids up to 49407 but the text encoder embeds only 1514"):
        load_components(WEIGHTS / "sd1.ckpt", registry=registry, tokenizer=tmp_path / "tokenizer")


def test_unknown_keys_in_a_single_file_are_named(tmp_path):
    state = to_original(SD / "sd1")
    state["model.diffusion_model.mystery_head.weight"] = np.zeros(3, np.float32)
    path = tmp_path / "odd.safetensors"
    save_state_dict(state, path)
    with pytest.raises(
        WeightsFormatError, match="odd.safetensors: unexpected UNet keys: .*mystery_head"
    ):
        convert_checkpoint(load_state_dict(path))


# -- errors and overrides --------------------------------------------------------------------------


def test_folder_without_model_index_is_refused(tmp_path, registry):
    with pytest.raises(FileNotFoundError, match="has no model_index.json"):
        load_components(tmp_path, registry=registry)
    with pytest.raises(FileNotFoundError, match="unet/ is one component of the model in .*sd1"):
        load_components(SD / "sd1" / "unet", registry=registry)


def test_other_files_are_refused(tmp_path, registry):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="neither a model folder .* nor a checkpoint file"):
        load_components(tmp_path / "notes.txt", registry=registry)
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_components(tmp_path / "absent", registry=registry)


def test_unknown_class_names_raise_the_registry_error(tmp_path, registry):
    model = copy_model(SD / "sd1", tmp_path / "m")
    index = json.loads((model / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNet3DConditionModel"]
    (model / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnknownPluginError, match="no denoiser named 'UNet3DConditionModel'"):
        load_components(model, registry=registry)


def test_missing_component_folder_is_named(tmp_path, registry):
    model = copy_model(SD / "sd1", tmp_path / "m")
    shutil.rmtree(model / "vae")
    with pytest.raises(FileNotFoundError, match=r"component folder missing: .*m/vae"):
        load_components(model, registry=registry)


def test_missing_and_misshaped_keys_name_the_file_and_keys(tmp_path, registry):
    model = copy_model(SD / "sd1", tmp_path / "m")
    folder = model / "unet"
    state = dict(load_component_weights(folder))
    del state["conv_in.bias"]
    state["conv_out.bias"] = np.zeros(5, np.float32)
    state["extra.weight"] = np.zeros(1, np.float32)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    save_state_dict(state, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(StateDictMismatchError) as info:
        load_components(model, registry=registry)
    message = str(info.value)
    assert "diffusion_pytorch_model.safetensors" in message
    for expected in (
        "missing keys: conv_in.bias",
        "unexpected keys: extra.weight",
        "conv_out.bias",
    ):
        assert expected in message


def test_a_malicious_bin_in_a_model_folder_is_refused(tmp_path, registry):
    import pickle

    from paddiff.weights import UnsafeCheckpointError

    from weights.test_unsafe import RunsCommand, torch_zip

    model = copy_model(SD / "sd1", tmp_path / "m")
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch_zip(
        model / "unet" / "diffusion_pytorch_model.bin", pickle.dumps(RunsCommand(f"touch {marker}"))
    )
    with pytest.raises(UnsafeCheckpointError, match="unet/diffusion_pytorch_model.bin: refusing"):
        load_components(model, registry=registry)
    assert not marker.exists()


def test_corrupt_weights_stop_loading_with_the_file_named(tmp_path, registry):
    model = copy_model(SD / "sd1", tmp_path / "m")
    path = model / "vae" / "diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsFormatError, match=r"vae/diffusion_pytorch_model.safetensors"):
        load_components(model, registry=registry)


def test_overrides_by_instance_and_by_name(registry):
    base = load_components(SD / "sd1", registry=registry)
    again = load_components(
        SD / "sd1", registry=registry, vae=base["vae"], scheduler="DDIMScheduler"
    )
    assert again["vae"] is base["vae"]
    assert type(again["scheduler"]).__name__ == "StubScheduler"
    assert again["scheduler"].config["steps_offset"] == 1  # the folder's config, another class
    assert again["scheduler"].config["_class_name"] == "DDIMScheduler"
    assert (
        load_components(SD / "sd1", registry=registry, scheduler="ddim")["scheduler"].config[
            "_class_name"
        ]
        == "DDIMScheduler"
    )  # aliases are accepted
    with pytest.raises(UnknownPluginError, match="no vae named 'NoSuchVAE'"):
        load_components(SD / "sd1", registry=registry, vae="NoSuchVAE")
    with pytest.raises(TypeError, match="unknown component overrides: unet"):
        load_components(SD / "sd1", registry=registry, unet=base["denoiser"])


def test_sd1_checkpoints_without_text_model_prefix_convert_too():
    # Checkpoints written with older transformers lack "text_model." under cond_stage_model.
    state = {
        k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
        for k, v in to_original(SD / "sd1").items()
    }
    converted = convert_checkpoint(StateDict.from_arrays(state))["text_encoder"].state
    want = load_component_weights(SD / "sd1" / "text_encoder")
    assert sorted(converted) == sorted("text_model." + k.removeprefix("text_model.") for k in want)


@pytest.mark.slow
def test_full_size_loading_stays_near_the_parameters_size():
    """Peak RSS of loading full-size SD 1.5 (see docs/loading.md); needs PADDIFF_FULLSIZE_SD15
    pointing at the folder benchmarks/make_fullsize_sd15.py wrote."""
    import os
    import subprocess
    import sys

    folder = os.environ.get("PADDIFF_FULLSIZE_SD15")
    if not folder:
        pytest.skip("set PADDIFF_FULLSIZE_SD15 to the folder of benchmarks/make_fullsize_sd15.py")
    script = ROOT / "benchmarks" / "load_memory.py"
    out = subprocess.run(
        [sys.executable, str(script), folder], capture_output=True, text=True, check=True
    ).stdout
    overhead = float(out.split("peak overhead over params:")[1].split("GiB")[0])
    assert overhead < 0.5, out
