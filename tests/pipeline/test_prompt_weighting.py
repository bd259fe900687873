"""WebUI emphasis syntax and chunked long prompts."""

from __future__ import annotations

import numpy as np
import paddiff
import pytest
from paddiff.prompt_weighting import encode_weighted, parse_weights

from support.pipeline_toys import ToyTextEncoder, toy_pipeline


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a cat", [("a cat", 1.0)]),
        ("a (cat)", [("a ", 1.0), ("cat", 1.1)]),
        ("a ((cat))", [("a ", 1.0), ("cat", pytest.approx(1.21))]),
        ("a [cat]", [("a ", 1.0), ("cat", pytest.approx(1 / 1.1))]),
        ("a (red cat:1.3), dog", [("a ", 1.0), ("red cat", 1.3), (", dog", 1.0)]),
        ("((a:1.5) b)", [("a", pytest.approx(1.65)), (" b", pytest.approx(1.1))]),
        (r"a \(literal\) 3:2", [("a (literal) 3:2", 1.0)]),
        ("(open", [("open", pytest.approx(1.1))]),
        ("BRICK (BREAD:0.5)", [("BRICK ", 1.0), ("BREAD", 0.5)]),
    ],
)
def test_parse_weights(text, expected):
    assert parse_weights(text) == expected


@pytest.mark.parametrize("weight", ["1" + "0" * 41, "101", "-101"])
def test_weights_that_would_overflow_are_refused(weight):
    with pytest.raises(paddiff.ValidationError, match="emphasis weight .* is outside"):
        parse_weights(f"a (cat:{weight})")


def test_break_starts_a_new_chunk():
    encoder = ToyTextEncoder()
    assert encode_weighted(encoder, "a cat BREAK a dog").shape == (1, 16, 4)


def test_a_plain_short_prompt_encodes_exactly_as_without_weighting():
    encoder = ToyTextEncoder()
    np.testing.assert_array_equal(
        encode_weighted(encoder, "a red cat"), encoder.encode(["a red cat"])
    )


def test_emphasis_scales_its_tokens_and_keeps_the_mean():
    encoder = ToyTextEncoder()
    plain = encoder.encode(["a red cat"])
    weighted = encode_weighted(encoder, "a (red:1.5) cat")
    assert weighted.shape == plain.shape
    np.testing.assert_allclose(weighted.mean(), plain.mean(), rtol=1e-5)
    ratio = weighted[0, :, 0] / plain[0, :, 0]
    assert ratio[2] == pytest.approx(1.5 * ratio[1], rel=1e-5)  # "red" vs "a"
    assert ratio[3] == pytest.approx(ratio[1], rel=1e-5)  # "cat" vs "a"


def test_long_prompt_is_chunked_instead_of_truncated(recwarn):
    pipe = toy_pipeline(long_prompts=True)  # the toy encoder reads 6 words per chunk
    prompt = "one two three four five six seven eight"
    pipe.text_to_image(prompt, negative_prompt="ugly", seed=1, steps=2, progress=False)
    assert not [w for w in recwarn if w.category is paddiff.PromptTruncatedWarning]
    assert pipe.text_encoder.encoded[:2] == ["one two three four five six", "seven eight"]
    # both halves of the guided batch padded to two chunks of 8 tokens
    assert pipe.denoiser.calls[0][1] == (2, 16, 4)
