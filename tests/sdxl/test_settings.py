"""SDXL's settings are checked before any compute, with errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.validation import ValidationError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"


@pytest.fixture(scope="module")
def pipe():
    return paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"denoising_end": 1.5}, "denoising_end must be a fraction"),
        ({"denoising_start": 0.5}, "denoising_start applies to image_to_image"),
        ({"original_size": (64,)}, "original_size must be two whole numbers"),
        ({"crops_coords_top_left": (-1, 0)}, "crops_coords_top_left must be two whole"),
        ({"aesthetic_score": "high"}, "aesthetic_score must be a number"),
        ({"output_type": "np"}, "output_type must be one of pil, latent"),
    ],
)
def test_bad_settings_are_refused_by_name(pipe, settings, message):
    with pytest.raises(ValidationError, match=message):
        pipe.text_to_image("a cat", steps=2, width=32, height=32, progress=False, **settings)


def test_latents_that_do_not_fit_are_refused(pipe):
    with pytest.raises(ValidationError, match="do not fit a 32x32 image"):
        pipe.image_to_image("a cat", image=np.zeros((1, 4, 8, 8), np.float32), width=32, height=32)
    with pytest.raises(ValidationError, match="strength"):
        pipe.image_to_image("a cat", image=np.zeros((1, 4, 16, 16), np.float32), strength=1.5)
