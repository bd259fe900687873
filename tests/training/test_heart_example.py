"""examples/heart_lora.py (docs/training.md's worked example): its data layout and the command
it runs agree with `paddiff train lora`, for every configuration the page reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "heart_lora.py"


@pytest.fixture(scope="module")
def heart_lora():
    spec = importlib.util.spec_from_file_location("heart_lora", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["heart_lora"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["heart_lora"]


def test_rendered_data_is_hearts_with_repeats_and_old_shapes_in_both_languages(
    tmp_path, heart_lora
):
    from paddiff.plugins.embedded import dataset
    from paddiff.training.data import read_examples

    run = heart_lora.RUNS["first"]  # renderings: no model needed
    heart_lora.make_data(tmp_path, run)
    hearts = read_examples(tmp_path / "data")
    assert len(hearts) == heart_lora.HEARTS * run.heart_repeats
    assert all(("心" in e.caption) or ("heart" in e.caption) for e in hearts)
    prior = read_examples(tmp_path / "prior")
    assert len(prior) == run.prior
    parsed = [dataset.parse_caption(e.caption) for e in prior]
    assert {p["shape"] for p in parsed} <= set(dataset.SHAPES)
    chinese = sum(any("\u4e00" <= c <= "\u9fff" for c in e.caption) for e in prior)
    assert chinese == run.prior // 2
    heart_lora.make_data(tmp_path, run)  # again: kept, not redrawn
    with pytest.raises(SystemExit, match="another run"):
        heart_lora.make_data(tmp_path, heart_lora.RUNS["render-hearts3"])


@pytest.mark.parametrize(
    "name", ["first", "checked", "own-hearts3-unet", "pivotal", "pivotal-mean-hearts6-unet"]
)
def test_the_training_command_is_one_paddiff_train_lora_accepts(tmp_path, heart_lora, name):
    from paddiff.cli import build_parser

    heart_lora.RUN = heart_lora.RUNS[name]
    command = heart_lora.train_command(tmp_path)
    args = build_parser("train").parse_args(command[command.index("train") :])
    assert args.reg_data == str(tmp_path / "prior")
    assert args.prior_loss_weight == heart_lora.RUNS[name].prior_loss_weight
    assert args.steps == heart_lora.RUNS[name].steps
    assert args.new_tokens == list(heart_lora.RUNS[name].new_tokens)


def test_the_pivotal_tokens_are_new_words_the_heart_captions_use(heart_lora):
    """Each --new-token is unknown to the embedded model's tokenizer, its INIT words are known,
    and every heart caption the data stage can write holds at least one of the tokens."""
    import numpy as np
    import paddiff
    from paddiff.plugins.embedded import dataset
    from paddiff.training.new_tokens import parse

    tokenizer = paddiff.load_pipeline().text_encoder.tokenizer
    tokens = []
    for spec in heart_lora.RUNS["pivotal"].new_tokens:
        token, init = parse(spec)
        assert not tokenizer.has_token(token) and tokenizer.unk_id not in tokenizer.text_ids(init)
        tokens.append(token)
    for i in range(200):
        rng = np.random.default_rng([heart_lora.DATA_SEED, True, i])
        caption = dataset.random_caption(heart_lora.heart_attributes(rng), rng)
        assert any(token in caption for token in tokens), caption


def test_the_evaluation_draws_keep_the_usual_and_confirm_sets(heart_lora):
    """The usual and --confirm sets are the ones the earlier runs were measured on."""
    from paddiff.plugins.embedded import quality

    usual = quality.evaluation_items(heart_lora.OLD_SEEN, 0)
    assert heart_lora.old_items("usual") == usual
    assert [i["seed"] for i in heart_lora.heart_items("confirm")][:2] == [25000, 25001]
    large = heart_lora.old_items("large")
    assert len(large) == 3 * heart_lora.OLD_SEEN
    assert not {i["seed"] for i in large} & {i["seed"] for i in usual}
