"""Added tokens (textual inversion, pivotal tuning) on the BERT and XLM-R text encoders: a new
token whose rows copy a word's rows encodes exactly as that word; removing gives the model back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chinese"
ENCODERS = {
    "taiyi_like": "BertModel",
    "altdiffusion_like": "RobertaSeriesModelWithTransformation",
}
# A word that is one token of each fixture's vocabulary (as the vocabulary spells it), and a
# prompt around it (XLM-R starts a word after an added token, so words are space-separated).
WORDS = {"taiyi_like": "猫", "altdiffusion_like": "▁cat"}
PROMPTS = {"taiyi_like": "一只{}在睡觉", "altdiffusion_like": "a {} painting"}


def load(folder: str):
    cls = paddiff.get("text_encoders", ENCODERS[folder])
    return cls.from_pretrained(FIXTURES / folder / "text_encoder")


def word_and_rows(encoder, folder):
    """A word of the vocabulary, as typed in a prompt, and its embedding rows."""
    ids = encoder.tokenizer.text_ids(WORDS[folder].lstrip("▁"))
    table = encoder.token_embedding().weight.numpy()
    return WORDS[folder].lstrip("▁"), table[ids]


@pytest.mark.parametrize("folder", list(ENCODERS))
def test_a_token_with_a_words_rows_encodes_as_that_word(folder):
    encoder = load(folder)
    word, rows = word_and_rows(encoder, folder)
    rows_before = encoder.token_embedding().weight.shape[0]
    assert len(rows) == 1
    encoder.add_tokens("<new>", rows)
    prompt = PROMPTS[folder]
    assert encoder.tokenizer.added["<new>"] == [rows_before]
    assert rows_before in encoder.tokenizer.text_ids(prompt.format("<new>"))
    with_token = encoder.encode([prompt.format("<new>"), "<new>"])
    with_word = encoder.encode([prompt.format(word), word])
    np.testing.assert_array_equal(with_token, with_word)


@pytest.mark.parametrize("folder", list(ENCODERS))
def test_removing_tokens_restores_the_vocabulary_and_renumbers_the_rest(folder):
    encoder = load(folder)
    table = encoder.token_embedding().weight.numpy().copy()
    before = encoder.encode(["一只猫 <two>"])
    hidden = table.shape[1]
    encoder.add_tokens("<one>", np.ones((2, hidden), np.float32))
    encoder.add_tokens("<two>", np.full((1, hidden), 2.0, np.float32))
    encoder.remove_tokens(["<one>"])
    assert encoder.tokenizer.added == {"<two>": [table.shape[0]]}
    assert (encoder.token_embedding().weight.numpy()[-1] == 2.0).all()
    encoder.remove_tokens()
    assert encoder.tokenizer.added == {}
    np.testing.assert_array_equal(encoder.token_embedding().weight.numpy(), table)
    np.testing.assert_array_equal(encoder.encode(["一只猫 <two>"]), before)


@pytest.mark.parametrize("folder", list(ENCODERS))
def test_existing_tokens_repeats_and_wrong_widths_are_refused(folder):
    encoder = load(folder)
    word, rows = word_and_rows(encoder, folder)
    token = WORDS[folder]  # as the vocabulary spells it
    with pytest.raises(ValueError, match="already a token of this tokenizer"):
        encoder.add_tokens(token, rows)
    encoder.add_tokens("<x>", rows)
    with pytest.raises(ValueError, match="already loaded as '<x>'"):
        encoder.add_tokens("<x>", rows)
    with pytest.raises(ValueError, match=r"shape \(1, 7\)"):
        encoder.add_tokens("<y>", np.zeros((1, 7), np.float32))
    with pytest.raises(ValueError, match="no added token '<y>'; added: '<x>'"):
        encoder.remove_tokens(["<y>"])


def test_textual_inversion_files_load_into_a_bert_pipeline(tmp_path):
    """The pipeline's load_textual_inversion (an A1111 .safetensors) works on the embedded
    model, whose text encoder is a BERT."""
    from paddiff.weights import save_state_dict

    pipe = paddiff.load_pipeline()
    encoder = pipe.text_encoder
    rows = encoder.token_embedding().weight.numpy()[encoder.tokenizer.text_ids("圆")]
    save_state_dict({"emb_params": rows}, tmp_path / "yuan.safetensors")
    assert pipe.load_textual_inversion(tmp_path / "yuan.safetensors") == "yuan"
    np.testing.assert_array_equal(
        encoder.encode(["红色的yuan，蓝底"]), encoder.encode(["红色的圆，蓝底"])
    )
    pipe.unload_textual_inversion()
    assert pipe.text_encoder.tokenizer.added == {}


def test_the_embedded_model_does_not_warn_about_words_added_since():
    """Its unknown-words warning leaves out added tokens (they are known words now)."""
    import warnings

    from paddiff.prompt_checks import PromptWordsWarning

    pipe = paddiff.load_pipeline()
    encoder = pipe.text_encoder
    rows = encoder.token_embedding().weight.numpy()[encoder.tokenizer.text_ids("圆")]

    def warned(prompt):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.text_to_image(prompt, steps=1, seed=0, progress=False)
        return [str(w.message) for w in caught if issubclass(w.category, PromptWordsWarning)]

    assert "心" in warned("红色的心形，蓝底")[0]
    encoder.add_tokens("心", rows)
    assert warned("红色的心形，蓝底") == []
    assert "爱" in warned("红色的爱心，蓝底")[0]
