"""Long prompts and WebUI emphasis (`long_prompts`) on both SDXL encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"


@pytest.fixture(scope="module")
def encoders():
    return paddiff.load_pipeline(FIXTURES / "base", execution="dynamic").text_encoder


def test_a_short_plain_prompt_encodes_as_without_long_prompts(encoders):
    hidden, pooled = encoders.encode_with_pooled(["a red circle"])
    weighted_hidden, weighted_pooled = encoders.encode_weighted_with_pooled("a red circle")
    np.testing.assert_allclose(weighted_hidden, hidden, atol=1e-6)
    np.testing.assert_allclose(weighted_pooled, pooled, atol=1e-6)


def test_a_long_prompt_gets_a_window_per_chunk_on_both_encoders(encoders):
    prompt = " ".join(["a red circle on a white background"] * 15)  # over 75 tokens
    hidden, pooled = encoders.encode_weighted_with_pooled(prompt)
    chunks, rest = divmod(hidden.shape[1], 77)
    assert chunks > 1 and rest == 0 and hidden.shape[2] == 64 and pooled.shape == (1, 32)
    first = encoders.encode_weighted_with_pooled("(red:1.5) circle")[0]
    plain = encoders.encode_weighted_with_pooled("red circle")[0]
    for part in (slice(0, 32), slice(32, 64)):  # the emphasis reaches both encoders
        assert np.abs(first[..., part] - plain[..., part]).max() > 1e-3


def test_generation_with_long_prompts_and_the_zero_negative(tmp_path):
    pipe = paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")
    pipe.long_prompts = True
    prompt = " ".join(["a (blue:1.2) square"] * 25)
    result = pipe.text_to_image(prompt, steps=2, width=32, height=32, seed=1, progress=False)
    assert np.asarray(result.images[0]).shape == (32, 32, 3)
    cond, uncond = pipe._encode_pair(prompt, None, True)
    assert uncond[0].shape == cond[0].shape and not uncond[0].any()  # zeros, padded alike
