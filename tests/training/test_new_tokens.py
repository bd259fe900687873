"""Pivotal tuning (`--new-token`): only the new token's row trains besides the LoRA, the file
carries it as A1111's bundled embedding, loading the LoRA makes the token usable, resume is bit
for bit, and bad tokens are refused."""

from __future__ import annotations

import numpy as np
import pytest

from support.training_data import SD1

from .test_train_lora import make_trainer

TOKEN = "圆"  # in every caption of the test data ("一个红色的圆"); three byte pieces for CLIP


def table(encoder) -> np.ndarray:
    return encoder.token_embedding().weight.numpy().copy()


def test_only_the_new_row_trains_and_starts_from_its_init_words(tmp_path):
    import paddiff

    base = paddiff.load_pipeline(SD1).text_encoder
    trainer = make_trainer(tmp_path, new_tokens=[f"{TOKEN}=a circle"], steps=3)
    encoder = trainer.text_encoder
    first = trainer.tokens.first
    assert first == table(base).shape[0] and encoder.tokenizer.added == {TOKEN: [first]}
    init = table(base)[base.tokenizer.encode_text("a circle")].mean(axis=0)
    np.testing.assert_array_equal(trainer.tokens.rows.numpy()[0], init)
    frozen = {k: v.numpy().copy() for k, v in encoder.net.state_dict().items()}
    trainer.run()
    for key, value in encoder.net.state_dict().items():  # the text encoder itself is frozen
        np.testing.assert_array_equal(value.numpy(), frozen[key], err_msg=key)
    assert np.abs(trainer.tokens.rows.numpy()[0] - init).max() > 1e-4  # the row trained
    # prompts without the token encode as the base model does, with it through the new id
    np.testing.assert_array_equal(encoder.encode(["一个红色的"]), base.encode(["一个红色的"]))
    assert first in encoder.tokenize([f"一个红色的{TOKEN}"])[0]


def test_the_file_bundles_the_token_and_loading_it_makes_the_token_usable(tmp_path):
    import paddiff
    from paddiff.weights import load_state_dict

    trainer = make_trainer(tmp_path, new_tokens=[TOKEN], steps=2)
    trainer.run()
    out = tmp_path / "out" / "lora.safetensors"
    state = load_state_dict(out)
    key = f"bundle_emb.{TOKEN}.string_to_param.*"
    np.testing.assert_array_equal(np.asarray(state[key]), trainer.tokens.rows.numpy())
    prompts = [f"一个绿色的{TOKEN}", "a blue disc"]
    trained = trainer.text_encoder.encode(prompts)  # through the training hook
    pipe = paddiff.load_pipeline(SD1)
    before = table(pipe.text_encoder)
    pipe.load_lora_weights(out, adapter_name="disc")
    assert pipe.text_encoder.tokenizer.added == {TOKEN: [before.shape[0]]}
    np.testing.assert_allclose(pipe.text_encoder.encode(prompts), trained, atol=1e-5)
    pipe.unload_lora_weights()
    assert pipe.text_encoder.tokenizer.added == {}
    np.testing.assert_array_equal(table(pipe.text_encoder), before)
    # a second LoRA bundling the same token is refused before anything changes
    pipe.load_lora_weights(out, adapter_name="one")
    with pytest.raises(ValueError, match=f"'{TOKEN}' is already a token.*nothing was applied"):
        pipe.load_lora_weights(out, adapter_name="two")
    assert list(pipe.lora.adapters) == ["one"]


def test_diffusers_format_writes_the_token_as_a_textual_inversion_file(tmp_path):
    from paddiff.lora.textual_inversion import read_embedding_file
    from paddiff.weights import load_state_dict

    trainer = make_trainer(tmp_path, new_tokens=[TOKEN], steps=1, output_format="diffusers")
    trainer.run()
    out = tmp_path / "out" / "lora.safetensors"
    assert not any(k.startswith("bundle_emb.") for k in load_state_dict(out))
    name, rows = read_embedding_file(tmp_path / "out" / "lora.0.safetensors")
    assert name == TOKEN
    np.testing.assert_array_equal(rows, trainer.tokens.rows.numpy())


def test_resume_with_new_tokens_is_bit_for_bit(tmp_path):
    options = {"new_tokens": [f"{TOKEN}=a circle"], "token_lr": 5e-2, "save_every": 2}
    straight = make_trainer(tmp_path, **options)
    straight_losses = straight.run()
    state = tmp_path / "out" / "lora-step000002.state"
    resumed = make_trainer(
        tmp_path, **options, resume_from=str(state), output=str(tmp_path / "resumed.safetensors")
    )
    assert resumed.step == 2
    assert resumed.run() == straight_losses[2:]
    np.testing.assert_array_equal(resumed.tokens.rows.numpy(), straight.tokens.rows.numpy())
    from paddiff.training.resume import ResumeError

    with pytest.raises(ResumeError, match="new_tokens: saved"):
        make_trainer(tmp_path, new_tokens=[TOKEN], save_every=2, resume_from=str(state))


@pytest.mark.parametrize(
    "tokens, message",
    [
        (["<absent>"], "in no caption, so it would never train"),
        (["<|endoftext|>"], "already a token of this tokenizer"),
        ([TOKEN, TOKEN], "given twice"),
        (["a.b"], "cannot contain '.'"),
        ([f"{TOKEN}="], "nothing after '='"),
    ],
)
def test_bad_new_tokens_are_refused(tmp_path, tokens, message):
    from support.training_data import kohya_folder

    data = kohya_folder(tmp_path / "data", count=2)
    (data / "000.txt").write_text("<|endoftext|> a.b <absent", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, new_tokens=tokens)


def test_a_bundled_embedding_of_another_width_is_refused_before_any_change(tmp_path):
    import paddiff
    from paddiff.weights import load_state_dict, save_state_dict

    fixture = SD1.parents[1] / "training" / "trained_kohya.safetensors"
    state = {k: np.asarray(v) for k, v in load_state_dict(fixture).items()}
    state["bundle_emb.<wide>.string_to_param.*"] = np.ones((1, 7), np.float32)
    save_state_dict(state, tmp_path / "wide.safetensors")
    pipe = paddiff.load_pipeline(SD1)
    with pytest.raises(ValueError, match="'<wide>' has width 7, this text encoder 32; nothing"):
        pipe.load_lora_weights(tmp_path / "wide.safetensors")
    assert not pipe.lora.adapters and pipe.text_encoder.tokenizer.added == {}
