"""The embedded model's evaluator: it must read the procedural renderings (ground truth) almost
perfectly before its verdicts on generated images mean anything."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.plugins.embedded import dataset, evaluate, held_out_phrasings, phrasing, quality


@pytest.fixture(scope="module")
def classifier():
    attrs, images = dataset.make_images(seed=11, count=600)
    return evaluate.ShapeClassifier(seed=0).fit(images, [a.shape for a in attrs])


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_ground_truth_renderings_score_almost_perfectly(classifier, split):
    attrs, images = dataset.make_images(seed=12, count=150, split=split)
    results = [
        evaluate.score(im, a.shape, a.fg, a.bg, classifier)
        for im, a in zip(images, attrs, strict=True)
    ]
    assert np.mean([r["fg_ok"] for r in results]) == 1.0
    assert np.mean([r["bg_ok"] for r in results]) == 1.0
    assert np.mean([r["all_ok"] for r in results]) >= 0.97


def test_wrong_images_are_caught(classifier):
    rng = np.random.default_rng(0)
    image = dataset.render(dataset.Attributes("star", "red", "blue", "big"), rng)
    assert evaluate.score(image, "star", "red", "blue", classifier)["all_ok"]
    assert not evaluate.score(image, "star", "green", "blue", classifier)["fg_ok"]
    assert not evaluate.score(image, "star", "red", "yellow", classifier)["bg_ok"]
    assert not evaluate.score(image, "circle", "red", "blue", classifier)["shape_ok"]
    blank = np.full((64, 64, 3), 40, np.uint8)  # no shape at all: nothing can be right but bg
    result = evaluate.score(blank, "circle", "red", "black", classifier)
    assert result["read"]["fg"] is None and not result["all_ok"] and result["bg_ok"]


def test_colour_reading_tolerates_a_shifted_rendition():
    # The generator's colours will not be the renderer's exactly: shift every channel a little.
    rng = np.random.default_rng(1)
    for fg, bg in [("orange", "yellow"), ("purple", "blue"), ("white", "black"), ("red", "green")]:
        image = dataset.render(dataset.Attributes("square", fg, bg, "big"), rng).astype(int)
        shifted = np.clip(image + rng.integers(-20, 21, size=3), 0, 255).astype(np.uint8)
        reading = evaluate.read_colours(shifted)
        assert (reading.fg, reading.bg) == (fg, bg)


def test_evaluation_items_cover_held_out_and_seen_combinations_in_both_languages():
    items = quality.evaluation_items(seen=10, held_out_repeats=2)
    assert sum(it["split"] == "held_out" for it in items) == 2 * len(dataset.HELD_OUT)
    assert all(it["combo"] in dataset.SEEN for it in items if it["split"] == "seen")
    for language in dataset.LANGUAGES:
        for kind, patterns in (
            ("seen", phrasing.PATTERNS[language]),
            ("held_out", held_out_phrasings.HELD_OUT_PATTERNS[language]),
        ):
            prompts = quality.prompts_for(items, language, kind)
            # every pattern of the kind is asked about, in turn
            assert {name for name, _ in prompts} == set(patterns)
            for item, (_, prompt) in zip(items, prompts, strict=True):
                parsed = dataset.parse_caption(prompt)
                assert (parsed["shape"], parsed["fg"], parsed["bg"]) == item["combo"], prompt


def test_another_draw_asks_other_items_in_other_words_with_other_image_seeds(monkeypatch):
    """`--draw 1` confirms a choice made on the usual draw: nothing of draw 0 is reused."""
    asked = {}

    def fake_run(generate, items, classifier, seed):
        asked[seed] = (items, quality.prompts_for(items, "en", "seen", seed))
        return {"table": {}, "patterns": {}, "records": []}

    monkeypatch.setattr(quality, "fit_classifier", lambda: (None, {}))
    monkeypatch.setattr(quality, "pipeline_generator", lambda *args: None)
    monkeypatch.setattr(quality, "run", fake_run)
    monkeypatch.setattr(quality, "example_check", lambda generate, classifier: {})
    monkeypatch.setattr(quality, "markdown", lambda table: "")
    monkeypatch.setattr(quality, "pattern_markdown", lambda table: "")
    for draw in (0, 1):
        quality.main(["--seen", "20", "--held-out-repeats", "1", "--draw", str(draw)])
    (items0, prompts0), (items1, prompts1) = asked.values()  # draw 0, then draw 1
    assert items0 == quality.evaluation_items(20, 1)  # draw 0 is the draw the docs report
    assert not {it["seed"] for it in items0} & {it["seed"] for it in items1}
    seen0 = [it["combo"] for it in items0 if it["split"] == "seen"]
    assert seen0 != [it["combo"] for it in items1 if it["split"] == "seen"]
    assert len(set(prompts0) & set(prompts1)) < len(prompts0) // 4


def test_the_tables_separate_language_phrasing_pattern_and_combination_split():
    records = [
        {
            "language": "zh",
            "phrasing": "seen",
            "pattern": "p",
            "split": "seen",
            "all_ok": True,
            "shape_ok": True,
            "fg_ok": True,
            "bg_ok": True,
        },
        {
            "language": "zh",
            "phrasing": "held_out",
            "pattern": "q",
            "split": "held_out",
            "all_ok": False,
            "shape_ok": True,
            "fg_ok": False,
            "bg_ok": True,
        },
    ]
    table = quality.tabulate(records)
    assert table["zh/seen/seen"]["all_ok"] == 1.0 and "zh/seen/held_out" not in table
    assert table["zh/held_out/held_out"]["colours_ok"] == 0.0
    assert table["zh/held_out/all"]["shape_ok"] == 1.0
    patterns = quality.by_pattern(records)
    assert set(patterns) == {"zh/seen/p", "zh/held_out/q"}


def test_new_shapes_are_drawn_captioned_and_read_without_changing_the_training_data():
    """The heart (docs/training.md) is drawable, captioned in both languages and read by a
    classifier fitted with it, while the model's own shapes and vocabulary stay the same."""
    assert "heart" not in dataset.SHAPES and "heart" in dataset.NEW_SHAPES
    assert all("心" not in ch for ch in dataset.caption_vocabulary()[0])
    attrs = dataset.Attributes("heart", "red", "blue", "big")
    rng = np.random.default_rng(0)
    for language in dataset.LANGUAGES:
        text = dataset.random_caption(attrs, rng, language)
        assert ("心" in text) if language == "zh" else ("heart" in text)
    train_attrs, train_images = dataset.make_images(seed=11, count=300)
    hearts, heart_images = quality.new_shape_images("heart", seed=1, count=60)
    classifier = evaluate.ShapeClassifier(seed=0).fit(
        np.concatenate([train_images, heart_images]), [a.shape for a in train_attrs + hearts]
    )
    _, test_hearts = quality.new_shape_images("heart", seed=2, count=40)
    assert classifier.accuracy(test_hearts, ["heart"] * 40) >= 0.95
    attrs, images = dataset.make_images(seed=12, count=60)
    assert classifier.accuracy(images, [a.shape for a in attrs]) >= 0.95
