"""Token ids of the Chinese text encoders equal transformers' BertTokenizer / XLMRobertaTokenizer.

The corpus (prompts.json: Chinese, English, mixed, emoji, full-width punctuation, very long and
edge-case prompts), the vocabulary files and the reference ids are made by
tests/fixtures/chinese/make_reference.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import paddiff
import pytest

from support.fixture_configs import CHINESE_MODELS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chinese"

# (model folder, registry name, key in reference_token_ids.npz)
TOKENIZERS = [
    (folder, model["text_encoder"], model["token_ids"])
    for folder, model in CHINESE_MODELS.items()
    if model["token_ids"]
]


def load_corpus() -> dict[str, list[str]]:
    with open(FIXTURES / "prompts.json", encoding="utf-8") as f:
        return json.load(f)


CORPUS = load_corpus()
PROMPTS = [prompt for prompts in CORPUS.values() for prompt in prompts]
REFERENCE = np.load(FIXTURES / "reference_token_ids.npz")


@pytest.fixture(scope="module", params=TOKENIZERS, ids=[t[0] for t in TOKENIZERS])
def case(request):
    folder, name, key = request.param
    encoder = paddiff.get("text_encoders", name).from_pretrained(FIXTURES / folder / "text_encoder")
    return encoder, REFERENCE[key]


def test_corpus_covers_the_prompt_kinds_users_write():
    assert len(PROMPTS) >= 500
    assert set(CORPUS) >= {"chinese", "english", "mixed", "emoji", "fullwidth", "long", "edge"}
    assert max(len(p) for p in CORPUS["long"]) > 600  # past Taiyi's 512 tokens


def test_token_ids_equal_the_reference_for_every_prompt(case):
    encoder, reference = case
    ids = encoder.tokenize(PROMPTS)
    assert ids.dtype == np.int64 and ids.shape == reference.shape
    differing = [i for i in range(len(PROMPTS)) if not np.array_equal(ids[i], reference[i])]
    details = [
        f"{PROMPTS[i]!r}: {ids[i][:20].tolist()} != {reference[i][:20].tolist()}"
        for i in differing[:5]
    ]
    assert not differing, f"{len(differing)} prompts differ, e.g.\n" + "\n".join(details)


@pytest.mark.parametrize("folder, name, key", TOKENIZERS, ids=[t[0] for t in TOKENIZERS])
def test_tokenizer_json_folders_give_the_same_ids(folder, name, key):
    # What transformers 5 writes when it re-saves a tokenizer: tokenizer.json only.
    encoder = paddiff.get("text_encoders", name).from_pretrained(
        FIXTURES / folder / "text_encoder", tokenizer_path=FIXTURES / "tokenizer_json" / key
    )
    np.testing.assert_array_equal(encoder.tokenize(PROMPTS), REFERENCE[key])


def test_long_prompts_are_cut_to_the_window_and_still_end_with_the_end_token(case):
    encoder, _ = case
    ids = encoder.tokenize(CORPUS["long"][-1:])
    end_token = 102 if ids[0, 0] == 101 else 2  # [SEP] in these BERT vocabs, </s> for XLM-R
    assert ids.shape == (1, encoder.max_length)
    assert ids[0, -1] == end_token


def test_each_chinese_character_is_one_token():
    encoder = paddiff.get("text_encoders", "BertModel").from_pretrained(
        FIXTURES / "taiyi_like" / "text_encoder"
    )
    ids = encoder.tokenize(["长城，油画"])[0]
    # [CLS] 长 城 ， 油 画 [SEP] then padding
    assert (ids != 0).sum() == 7


def test_added_tokens_are_refused_and_an_empty_list_is_fine(tmp_path):
    from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer

    folder = tmp_path / "tokenizer"
    shutil.copytree(FIXTURES / "taiyi_like" / "tokenizer", folder)
    (folder / "added_tokens.json").write_text("{}")  # what Taiyi publishes
    ids, _ = WordPieceTokenizer.from_folder(folder)(PROMPTS[:50], 512)
    np.testing.assert_array_equal(ids, REFERENCE["bert"][:50])
    # transformers would match an added token before WordPiece; paddiff refuses instead.
    (folder / "added_tokens.json").write_text(json.dumps({"<dog>": 711}))
    with pytest.raises(ValueError, match="added tokens are not supported"):
        WordPieceTokenizer.from_folder(folder)


def test_a_clip_tokenizer_folder_given_to_bert_is_named_for_what_it_is():
    # it used to fail on CLIP's <|startoftext|> as an "added token"
    from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer

    clip_folder = Path(__file__).parents[1] / "fixtures" / "sd" / "sd1" / "tokenizer"
    with pytest.raises(ValueError, match="expected a WordPiece model .* got 'BPE'"):
        WordPieceTokenizer.from_folder(clip_folder)
