"""LoRA / LoCon and textual inversion against diffusers + PEFT on the tiny SD 1.x fixture.

The adapters and the reference outputs come from tests/fixtures/lora/make_reference.py (diffusers
0.42.1 + PEFT: `load_lora_weights` + `set_adapters`, checked there against weights merged by
hand). Adapter "a" touches attention, feed-forward, 1x1 projections, 3x3 resnet convolutions
(LoCon) and the time MLP of the UNet and every projection of the text encoder.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from paddiff.lora import LoraFormatError, LoraMismatchError, LoraPartlyAppliedWarning
from paddiff.weights import save_state_dict

from support.fixture_configs import FIXTURES, LORA_CASES, LORA_PROMPTS, ti_prompts
from support.pipeline_fixtures import fixture_pipeline

LORA = FIXTURES / "lora"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ref():
    with np.load(LORA / "reference.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def pipe():
    return fixture_pipeline("sd1")


def outputs(pipe, ref):
    unet = pipe.denoiser(ref["unet_latents"], ref["unet_timesteps"], ref["unet_context"])
    text = np.concatenate([pipe.text_encoder.encode([p]) for p in LORA_PROMPTS])
    return np.asarray(unet), np.asarray(text)


def assert_close(got, expected, what):
    gap = float(np.abs(got - expected).max())
    assert gap <= TOLERANCE, f"{what}: max difference {gap:.2e}"


def test_base_outputs_match_reference(pipe, ref):
    unet, text = outputs(pipe, ref)
    assert_close(unet, ref["unet_base"], "unet")
    assert_close(text, ref["text_base"], "text encoder")


@pytest.mark.parametrize(
    "file", ["a_peft.safetensors", "a_kohya.safetensors", "a_kohya.pt"], ids=lambda f: f
)
def test_one_adapter_matches_diffusers_in_every_format(pipe, ref, file):
    report = pipe.load_lora_weights(LORA / file, adapter_name="a")
    assert report.skipped == []
    unet, text = outputs(pipe, ref)
    assert_close(unet, ref["unet_a"], "unet")
    assert_close(text, ref["text_a"], "text encoder")
    assert np.abs(unet - ref["unet_base"]).max() > 1e-2  # the adapter does change the output


def test_two_adapters_with_weights_match_diffusers(pipe, ref):
    pipe.load_lora_weights(LORA / "a_kohya.safetensors", adapter_name="a")
    pipe.load_lora_weights(LORA / "b_peft.safetensors", adapter_name="b")
    pipe.set_adapters(["a", "b"], LORA_CASES["ab"])
    unet, text = outputs(pipe, ref)
    assert_close(unet, ref["unet_ab"], "unet")
    assert_close(text, ref["text_ab"], "text encoder")


def test_unload_gives_back_the_base_model_exactly(pipe, ref):
    before_unet, before_text = outputs(pipe, ref)
    weights = {k: v.numpy().copy() for k, v in pipe.denoiser.net.state_dict().items()}
    pipe.load_lora_weights(LORA / "a_peft.safetensors")
    pipe.load_lora_weights(LORA / "b_peft.safetensors", scale=0.4)
    pipe.set_adapters(["default_0", "default_1"], [0.3, 1.2])
    pipe.unload_lora_weights()
    after_unet, after_text = outputs(pipe, ref)
    assert np.array_equal(before_unet, after_unet)
    assert np.array_equal(before_text, after_text)
    for key, value in pipe.denoiser.net.state_dict().items():
        assert np.array_equal(value.numpy(), weights[key]), key


def test_fuse_survives_unload_and_unfuse_removes_it(pipe, ref):
    base, _ = outputs(pipe, ref)
    pipe.load_lora_weights(LORA / "a_peft.safetensors", adapter_name="a")
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    assert_close(outputs(pipe, ref)[0], ref["unet_a"], "fused unet after unload")
    pipe.unfuse_lora()
    assert np.array_equal(outputs(pipe, ref)[0], base)


def test_set_adapters_weight_zero_and_disable(pipe, ref):
    base, _ = outputs(pipe, ref)
    pipe.load_lora_weights(LORA / "a_peft.safetensors", adapter_name="a")
    pipe.set_adapters("a", 0.0)
    assert np.array_equal(outputs(pipe, ref)[0], base)
    pipe.set_adapters("a")
    assert_close(outputs(pipe, ref)[0], ref["unet_a"], "re-enabled")
    with pytest.raises(ValueError, match="no adapter named 'c'"):
        pipe.set_adapters(["a", "c"])


def test_old_diffusers_processor_keys(pipe, ref, tmp_path):
    """diffusers' pre-PEFT `processor.to_q_lora.down` keys (no alpha: scale 1) give what the
    same factors in PEFT keys without metadata give."""
    from paddiff.weights import load_state_dict

    report = pipe.load_lora_weights(LORA / "a_old_diffusers.bin", adapter_name="old")
    assert report.format == "diffusers"
    assert report.applied == 7 * 2 * 4  # 7 transformer blocks, attn1 + attn2, q k v out
    old, _ = outputs(pipe, ref)
    pipe.unload_lora_weights()
    state = load_state_dict(LORA / "a_peft.safetensors")
    projections = (".to_q.", ".to_k.", ".to_v.", ".to_out.0.")
    attention = {
        k: state[k] for k in state if k.startswith("unet.") and any(p in k for p in projections)
    }
    save_state_dict(attention, tmp_path / "attention.safetensors")
    pipe.load_lora_weights(tmp_path / "attention.safetensors", adapter_name="peft")
    assert_close(old, outputs(pipe, ref)[0], "old diffusers keys against PEFT keys")
    assert np.abs(old - ref["unet_base"]).max() > 1e-3


def test_paddle_layout_pdparams_equal_safetensors(pipe, ref, tmp_path):
    """ppdiffusers' .pdparams keep Linear weights [in, out]: 2-D factors are transposed back."""
    import paddle
    from paddiff.weights import load_state_dict

    state = load_state_dict(LORA / "a_peft.safetensors")
    paddle_layout = {k: (v.T if v.ndim == 2 else v) for k, v in ((k, state[k]) for k in state)}
    paddle.save(
        {k: paddle.to_tensor(v) for k, v in paddle_layout.items()}, str(tmp_path / "a.pdparams")
    )
    # the safetensors metadata (lora_alpha) is lost in a pickle: alpha = rank, so compare with
    # the same file re-saved without metadata
    save_state_dict(dict((k, state[k]) for k in state), tmp_path / "a_plain.safetensors")
    pipe.load_lora_weights(tmp_path / "a.pdparams", adapter_name="p")
    from_pickle, _ = outputs(pipe, ref)
    pipe.unload_lora_weights()
    pipe.load_lora_weights(tmp_path / "a_plain.safetensors", adapter_name="s")
    assert_close(from_pickle, outputs(pipe, ref)[0], "pdparams against safetensors")


def test_wrong_sizes_are_refused_and_nothing_is_applied(pipe, ref):
    before = outputs(pipe, ref)
    with pytest.raises(LoraMismatchError) as error:
        pipe.load_lora_weights(LORA / "sdxl_like.safetensors")
    message = str(error.value)
    assert "sdxl_like.safetensors" in message and "lora_unet_" in message
    assert "nothing was applied" in message
    after = outputs(pipe, ref)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert pipe.lora.adapters == {}


def test_unknown_layers_only_are_refused(pipe, tmp_path):
    bogus = {
        "lora_unet_input_blocks_1_1_proj_in.lora_down.weight": np.ones((2, 16), np.float32),
        "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": np.ones((16, 2), np.float32),
    }
    save_state_dict(bogus, tmp_path / "other.safetensors")
    with pytest.raises(LoraMismatchError, match="none of its 1 layers exists"):
        pipe.load_lora_weights(tmp_path / "other.safetensors")


def test_partly_matching_file_reports_applied_and_skipped(pipe, tmp_path):
    from paddiff.weights import load_state_dict

    state = load_state_dict(LORA / "a_kohya.safetensors")
    mixed = {k: state[k] for k in state}
    mixed["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = np.ones((2, 8), "f4")
    mixed["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = np.ones((8, 2), "f4")
    save_state_dict(mixed, tmp_path / "mixed.safetensors")
    with pytest.warns(LoraPartlyAppliedWarning, match=r"applied \d+ layers, skipped 1"):
        report = pipe.load_lora_weights(tmp_path / "mixed.safetensors")
    assert report.skipped == ["text_encoder_2:text_model_encoder_layers_0_mlp_fc1"]


def test_unreadable_file_names_the_readers(pipe, tmp_path):
    save_state_dict({"foo.weight": np.ones((2, 2), np.float32)}, tmp_path / "x.safetensors")
    with pytest.raises(LoraFormatError, match="x.safetensors: no LoRA format reader"):
        pipe.load_lora_weights(tmp_path / "x.safetensors")


def test_a_format_plugin_can_be_added(pipe, ref, tmp_path):
    """A reader registered in the `lora_formats` group reads a file no built-in knows."""
    import paddiff
    from paddiff.interfaces import LoraFormat
    from paddiff.lora import LoraModule
    from paddiff.weights import load_state_dict

    class Reversed(LoraFormat):
        @classmethod
        def matches(cls, keys):
            return all(k.startswith("rev:") for k in keys)

        @classmethod
        def read(cls, tensors, metadata):
            out = []
            for key in tensors:
                if key.endswith(".lora_down.weight"):
                    base = key[4:].removesuffix(".lora_down.weight")
                    up = tensors["rev:" + base + ".lora_up.weight"]
                    alpha = tensors.get("rev:" + base + ".alpha")
                    alpha = None if alpha is None else float(alpha)
                    component, _, module = base.partition("/")
                    out.append(LoraModule(component, module, tensors[key], up, alpha))
            return out

    state = load_state_dict(LORA / "a_kohya.safetensors")
    renamed = {}
    for key in state:
        base, _, rest = key.partition(".")
        component = "unet" if base.startswith("lora_unet_") else "text_encoder"
        module = base.removeprefix("lora_unet_").removeprefix("lora_te_")
        renamed[f"rev:{component}/{module}.{rest}"] = state[key]
    save_state_dict(renamed, tmp_path / "a.rev.safetensors")
    paddiff.register("lora_formats", "reversed", Reversed)
    try:
        report = pipe.load_lora_weights(tmp_path / "a.rev.safetensors")
    finally:
        paddiff.registry.default_registry().unregister("lora_formats", "reversed")
    assert report.format == "reversed"
    assert_close(outputs(pipe, ref)[0], ref["unet_a"], "plugin-read unet")


def test_generation_with_two_adapters_matches_diffusers(pipe, ref):
    pipe = pipe.with_components(scheduler="DDIMScheduler")
    pipe.load_lora_weights(LORA / "a_peft.safetensors", adapter_name="a")
    pipe.load_lora_weights(LORA / "b_peft.safetensors", adapter_name="b")
    pipe.set_adapters(["a", "b"], LORA_CASES["ab"])
    result = pipe.text_to_image(
        LORA_PROMPTS[0],
        negative_prompt="blurry",
        steps=6,
        guidance_scale=7.5,
        width=32,
        height=32,
        latents=ref["generation_latents"],
        seed=0,
        progress=False,
    )
    got = np.asarray(result.images[0]).astype(np.int16)
    gap = np.abs(got - ref["generation_ab"][0].astype(np.int16)).max()
    assert gap <= 2, f"max difference {gap}/255"
    assert "Lora hashes" not in result.settings[0]  # settings keys, the PNG label comes later
    assert result.settings[0]["lora_hashes"].startswith("a_peft: ")


def test_textual_inversion_matches_diffusers(pipe, ref):
    assert pipe.load_textual_inversion(LORA / "ti_learned_embeds.safetensors") == "<ti-one>"
    pipe.load_textual_inversion(LORA / "ti_a1111.pt", token="<ti-two>")
    pipe.load_textual_inversion(LORA / "ti_a1111.safetensors", token="<ti-three>")
    got = np.concatenate([pipe.text_encoder.encode([p]) for p in ti_prompts()])
    assert_close(got, ref["ti_hidden"], "textual inversion")


def test_textual_inversion_in_negative_prompt_and_emphasis(pipe):
    pipe.load_textual_inversion(LORA / "ti_a1111.pt", token="<ti-two>")
    pipe.long_prompts = True
    plain = pipe.text_to_image("a cat", negative_prompt="<ti-two>", steps=2, seed=1, progress=False)
    other = pipe.text_to_image("a cat", negative_prompt="a dog", steps=2, seed=1, progress=False)
    assert np.asarray(plain.images[0]).tolist() != np.asarray(other.images[0]).tolist()
    ids = pipe.text_encoder.tokenize(["(<ti-two>:1.2) x"])[0]
    assert list(ids[2:4]) == pipe.text_encoder.tokenizer.added["<ti-two>"]
    from paddiff.prompt_weighting import encode_weighted

    weighted = encode_weighted(pipe.text_encoder, "(<ti-two>:1.5), a cat")
    unweighted = encode_weighted(pipe.text_encoder, "<ti-two>, a cat")
    assert not np.allclose(weighted, unweighted)
    assert "ti_hashes" in plain.settings[0]


def test_textual_inversion_of_the_wrong_width_is_refused(pipe, tmp_path):
    save_state_dict({"emb_params": np.ones((2, 768), np.float32)}, tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match="width 768.*nothing was added"):
        pipe.load_textual_inversion(tmp_path / "wide.safetensors")
    pipe.unload_textual_inversion()


def test_lora_tags_and_scales():
    from paddiff.lora.names import AdapterNameError, extract_lora_tags, resolve_name, split_scale

    text, tags = extract_lora_tags("a cat <lora:style:0.6>, <lora:lcm>  on grass")
    assert text == "a cat , on grass" or text == "a cat, on grass" or "lora" not in text
    assert tags == [("style", 0.6), ("lcm", 1.0)]
    assert split_scale("/x/y.safetensors:0.5") == ("/x/y.safetensors", 0.5)
    assert split_scale("C:/x/y.safetensors") == ("C:/x/y.safetensors", 1.0)
    for bad in ("../a", "/etc/passwd", "a/b", ".hidden"):
        with pytest.raises(AdapterNameError, match="not a path"):
            resolve_name(bad, [LORA])
    assert resolve_name("b_peft", [LORA]) == LORA / "b_peft.safetensors"
    with pytest.raises(AdapterNameError, match="available: .*b_peft"):
        resolve_name("missing", [LORA])
    with warnings.catch_warnings():
        warnings.simplefilter("error")


def test_cli_lora_options_tags_and_png_parameters(tmp_path):
    from paddiff.png_info import read_parameters

    from support.helpers import run_cli

    model = FIXTURES / "sd" / "sd1"
    out = tmp_path / "x.png"
    result = run_cli(
        "generate",
        "a cat <lora:b_peft:0.4> with ti_a1111",
        "--model", str(model),
        "--lora", f"{LORA / 'a_kohya.safetensors'}:0.7",
        "--embedding", str(LORA / "ti_a1111.safetensors"),
        "--steps", "2", "--seed", "1", "--no-progress", "-o", str(out),
        env={"PADDIFF_LORA_DIR": str(LORA)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a_kohya.safetensors (kohya, weight 0.7)" in result.stderr
    assert "b_peft.safetensors (diffusers, weight 0.4)" in result.stderr
    parameters = read_parameters(out)
    assert "<lora:" not in parameters["prompt"]
    assert parameters["Lora hashes"].startswith("a_kohya: ")
    assert "b_peft: " in parameters["Lora hashes"]
    assert parameters["TI hashes"].startswith("ti_a1111: ")


def test_cli_refuses_a_path_in_a_lora_tag_and_a_misfit_lora(tmp_path):
    from support.helpers import run_cli

    model = FIXTURES / "sd" / "sd1"
    common = ("--model", str(model), "--steps", "1", "--no-progress", "-o", str(tmp_path))
    result = run_cli("generate", "a cat <lora:../lora/b_peft:1>", "--lora-dir", str(LORA), *common)
    assert result.returncode == 1 and "not a path" in result.stderr
    result = run_cli("generate", "a cat", "--lora", str(LORA / "sdxl_like.safetensors"), *common)
    assert result.returncode == 1 and "sdxl_like.safetensors" in result.stderr
    assert not list(tmp_path.glob("*.png"))


def test_lycoris_algorithms_other_than_locon_are_refused_by_name(pipe, tmp_path):
    loha = {
        "lora_unet_mid_block_attentions_0_proj_in.hada_w1_a": np.ones((32, 2), np.float32),
        "lora_unet_mid_block_attentions_0_proj_in.hada_w1_b": np.ones((2, 32), np.float32),
    }
    save_state_dict(loha, tmp_path / "loha.safetensors")
    with pytest.raises(LoraFormatError, match="loha.safetensors: .*LoHa layers are not supported"):
        pipe.load_lora_weights(tmp_path / "loha.safetensors")
    assert pipe.lora.adapters == {}


def test_pipelines_from_with_components_share_the_adapters(pipe, ref):
    base, _ = outputs(pipe, ref)
    euler = pipe.with_components(scheduler="EulerDiscreteScheduler")
    euler.load_lora_weights(LORA / "a_peft.safetensors", adapter_name="a")
    assert pipe.get_active_adapters() == ["a"]
    pipe.unload_lora_weights()
    assert np.array_equal(outputs(euler, ref)[0], base)
