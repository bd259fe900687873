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
