"""The Chinese text encoders load published-layout folders and compute what transformers does.

Reference hidden states come from tiny random-weight transformers models (BertModel,
ChineseCLIPTextModel, diffusers' RobertaSeriesModelWithTransformation with and without the
pre-transformation), made by tests/fixtures/chinese/make_reference.py. Each is what the
diffusers pipeline consumes: `text_encoder(ids, attention_mask=...)[0]`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.weights import save_state_dict
from safetensors.numpy import load_file

from support.fixture_configs import CHINESE_MODELS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chinese"
SD1 = Path(__file__).parents[1] / "fixtures" / "sd" / "sd1"  # the models area's tiny SD 1.x
FOLDERS = list(CHINESE_MODELS)

with open(FIXTURES / "prompts.json", encoding="utf-8") as f:
    PROMPTS = [prompt for prompts in json.load(f).values() for prompt in prompts]
REFERENCE = np.load(FIXTURES / "reference_hidden_states.npz")
SUBSET = [PROMPTS[i] for i in REFERENCE["subset_index"]]


def text_encoder_name(model_folder: Path) -> str:
    """The registry name a loader uses: model_index.json's class, else config.json's."""
    index = model_folder / "model_index.json"
    if index.is_file():
        return json.loads(index.read_text())["text_encoder"][1]
    return json.loads((model_folder / "text_encoder" / "config.json").read_text())["architectures"][
        0
    ]


def load(model_folder: Path, **options):
    cls = paddiff.get("text_encoders", text_encoder_name(model_folder))
    return cls.from_pretrained(model_folder / "text_encoder", **options)


@pytest.mark.parametrize("folder", FOLDERS)
def test_conditioning_equals_the_reference_pipeline_input(folder):
    encoder = load(FIXTURES / folder)
    out = encoder.encode(SUBSET)
    expected = REFERENCE[folder]
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert out.shape[1:] == (encoder.max_length, encoder.hidden_size)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_bert_with_a_padding_mask_equals_the_reference():
    # Taiyi's pipeline passes no mask; a config with use_attention_mask would. Same weights.
    encoder = load(FIXTURES / "taiyi_like")
    ids, mask = encoder.tokenizer(SUBSET[:3], encoder.max_length)
    out = encoder.hidden_states(ids, mask)[-1]
    np.testing.assert_allclose(out, REFERENCE["taiyi_like_masked"], atol=1e-4, rtol=0)
    # The mask matters here: without it the padding tokens change the result.
    assert np.abs(encoder.hidden_states(ids)[-1] - out).max() > 1e-3


def test_window_lengths_and_widths_come_from_the_folder():
    taiyi = load(FIXTURES / "taiyi_like")
    alt = load(FIXTURES / "altdiffusion_like")
    assert (taiyi.max_length, taiyi.hidden_size, taiyi.use_attention_mask) == (512, 32, False)
    # AltDiffusion conditions on the projection (project_dim), with the padding mask.
    assert (alt.max_length, alt.hidden_size, alt.use_attention_mask) == (77, 32, True)
    assert load(FIXTURES / "taiyi_like", max_length=77).encode(["猫"]).shape == (1, 77, 32)
    # XLM-R positions start after padding_idx: 80 position rows leave 78 tokens.
    with pytest.raises(ValueError, match="78 positions"):
        load(FIXTURES / "altdiffusion_like", max_length=79)


@pytest.mark.parametrize("folder", ["taiyi_like", "altdiffusion_m9_like"])
def test_exported_program_matches_the_reference(tmp_path, folder):
    # Static execution (jit.save + Paddle Inference), as the UNet and VAE offer it.
    from paddiff.execution.cache import ExportCache

    encoder = load(FIXTURES / folder)
    encoder.runner.use_static(ExportCache(tmp_path, threads=1))
    out = encoder.encode(SUBSET[:3])
    np.testing.assert_allclose(out, REFERENCE[folder][:3], atol=1e-4, rtol=0)


def test_unconditional_embedding_is_the_empty_prompt():
    encoder = load(FIXTURES / "altdiffusion_like")
    np.testing.assert_array_equal(encoder.unconditional(2), encoder.encode(["", ""]))


def copy_model(tmp_path: Path, folder: str) -> Path:
    target = tmp_path / folder
    shutil.copytree(FIXTURES / folder, target)
    return target


def test_a_script_built_vocabulary_without_tokenizer_config_loads(tmp_path):
    # The embedded model's layout: transformers BertModel keys + a vocab.txt made by a script,
    # nothing Chinese-RoBERTa specific, no tokenizer_config.json (so BERT's defaults apply).
    model = copy_model(tmp_path, "taiyi_like")
    (model / "tokenizer" / "tokenizer_config.json").unlink()
    (model / "tokenizer" / "special_tokens_map.json").unlink()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["red", "cat", "dog", "##s", "山", "水", ","]
    vocab = specials + words + [f"[unused{i}]" for i in range(711 - len(specials) - len(words))]
    (model / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    encoder = load(model)
    assert encoder.max_length == 512  # the position table's length
    assert encoder.tokenize(["Red cats, 山水"])[0, :9].tolist() == [2, 5, 6, 8, 11, 9, 10, 3, 0]
    assert np.isfinite(encoder.encode(["red dogs"])).all()


def test_missing_unexpected_and_misshaped_weights_are_named(tmp_path):
    model = copy_model(tmp_path, "altdiffusion_like")
    weights = model / "text_encoder" / "model.safetensors"
    state = load_file(str(weights))
    del state["transformation.bias"]
    state["roberta.encoder.layer.0.extra.weight"] = np.zeros(3, np.float32)
    state["roberta.embeddings.word_embeddings.weight"] = np.zeros((5, 32), np.float32)
    state["roberta.pooler.dense.bias"] = np.zeros(32, np.float32)  # known and unused: ignored
    save_state_dict(state, weights)
    with pytest.raises(ValueError) as error:
        load(model)
    message = str(error.value)
    assert str(weights) in message
    assert "missing keys: transformation.bias" in message
    assert "unexpected keys: roberta.encoder.layer.0.extra.weight" in message
    assert "wrong shape: roberta.embeddings.word_embeddings.weight" in message
    assert "pooler" not in message


@pytest.mark.parametrize("folder", ["taiyi_like", "altdiffusion_m9_like"])
def test_save_pretrained_round_trips(tmp_path, folder):
    encoder = load(FIXTURES / folder)
    encoder.save_pretrained(tmp_path / "text_encoder")
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    again = type(encoder).from_pretrained(tmp_path / "text_encoder")
    assert again.max_length == encoder.max_length
    np.testing.assert_array_equal(again.tokenize(SUBSET), encoder.tokenize(SUBSET))
    np.testing.assert_array_equal(again.encode(SUBSET[:2]), encoder.encode(SUBSET[:2]))


def test_taiyi_published_pytorch_bin_loads(tmp_path):
    # Taiyi's text_encoder/ holds pytorch_model.bin (with the old position_ids buffer).
    from support.weights_formats import write_torch_zip

    model = copy_model(tmp_path, "taiyi_like")
    weights = model / "text_encoder" / "model.safetensors"
    state = load_file(str(weights))
    state["embeddings.position_ids"] = np.arange(512, dtype=np.int64)[None]
    write_torch_zip(state, model / "text_encoder" / "pytorch_model.bin")
    weights.unlink()
    out = load(model).encode(SUBSET[:2])
    np.testing.assert_allclose(out, REFERENCE["taiyi_like"][:2], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "folder, entry",
    [
        ("taiyi_like", ["transformers", "BertModel"]),
        ("altdiffusion_like", ["alt_diffusion", "RobertaSeriesModelWithTransformation"]),
    ],
)
def test_the_loader_picks_the_encoder_from_model_index(tmp_path, folder, entry):
    # A whole model folder: SD 1.x components from the models fixture, this text encoder.
    from paddiff.loader import load_components

    model = tmp_path / "model"
    shutil.copytree(SD1, model, ignore=shutil.ignore_patterns("text_encoder", "tokenizer*"))
    for part in ("text_encoder", "tokenizer"):
        shutil.copytree(FIXTURES / folder / part, model / part)
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "text_encoder": entry}))
    encoder = load_components(model)["text_encoder"]
    assert type(encoder).__name__ == entry[1]
    np.testing.assert_allclose(encoder.encode(SUBSET), REFERENCE[folder], atol=1e-4, rtol=0)


def test_missing_tokenizer_folder_is_reported(tmp_path):
    model = copy_model(tmp_path, "taiyi_like")
    shutil.rmtree(model / "tokenizer")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load(model)


def test_unsupported_position_embeddings_are_refused(tmp_path):
    model = copy_model(tmp_path, "taiyi_like")
    config_file = model / "text_encoder" / "config.json"
    config = json.loads(config_file.read_text())
    config["position_embedding_type"] = "relative_key"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="relative_key"):
        load(model)
