"""The embedded model's procedural dataset: deterministic, held-out combinations never used for
training, and captions that say exactly what the image shows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from paddiff.plugins.embedded import dataset


def test_the_same_seed_and_index_give_the_same_example():
    first = dataset.example(seed=7, index=3)
    again = dataset.example(seed=7, index=3)
    other = dataset.example(seed=8, index=3)
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_the_training_sampler_never_produces_a_held_out_combination():
    attrs, _ = dataset.make_images(seed=0, count=2000)
    seen = {a.combination for a in attrs}
    assert not seen & set(dataset.HELD_OUT)
    assert len(seen) > 0.9 * len(dataset.SEEN)  # and it covers the training combinations


def test_held_out_is_about_a_tenth_and_leaves_every_attribute_pair_in_training():
    combos = dataset.all_combinations()
    assert len(combos) == 6 * 8 * 7 and 0.08 < len(dataset.HELD_OUT) / len(combos) < 0.13
    seen = dataset.SEEN
    for i, j in itertools.combinations(range(3), 2):
        pairs_in_training = {(c[i], c[j]) for c in seen}
        pairs_overall = {(c[i], c[j]) for c in combos}
        assert pairs_in_training == pairs_overall
    assert {c[0] for c in dataset.HELD_OUT} == set(dataset.SHAPES)


def test_rendering_uses_the_named_colours():
    attrs = dataset.Attributes("circle", "red", "blue", "big")
    image = dataset.render(attrs, np.random.default_rng(0)).astype(int)
    assert image.shape == (64, 64, 3)
    assert (image[0, 0] == dataset.PALETTE["blue"]).all()  # a corner is background
    assert (image[32, 32] == dataset.PALETTE["red"]).all()  # a big circle covers the centre
    ring = dataset.render(
        dataset.Attributes("ring", "red", "blue", "big"), np.random.default_rng(0)
    )
    assert (ring[32, 32] == dataset.PALETTE["blue"]).all()  # a ring's hole shows the background
    with pytest.raises(ValueError, match="both"):
        dataset.render(dataset.Attributes("circle", "red", "red"), np.random.default_rng(0))


def test_random_captions_name_the_attributes_in_both_languages():
    rng = np.random.default_rng(3)
    attrs = dataset.Attributes("ring", "orange", "yellow", "small")
    for language in dataset.LANGUAGES:
        for _ in range(20):
            text = dataset.random_caption(attrs, rng, language)
            parsed = dataset.parse_caption(text)
            assert parsed["language"] == language
            assert (parsed["shape"], parsed["fg"], parsed["bg"]) == attrs.combination, text
            assert parsed["size"] in (None, "small"), text
    with pytest.raises(ValueError, match="not a caption"):
        dataset.parse_caption("a photo of a cat")
