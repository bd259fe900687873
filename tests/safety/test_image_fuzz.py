"""The image checker's preprocessing against transformers' CLIPImageProcessorPil on odd images:
1xN, very wide, 16-bit, float, palette, alpha, CMYK, ... (issue 23, item 4). The images and the
reference come from tests/fixtures/image_fuzz/make_reference.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from paddiff.plugins.safety.clip_preprocess import ClipImageSettings, preprocess

FIXTURE = Path(__file__).parents[1] / "fixtures" / "image_fuzz"
_spec = importlib.util.spec_from_file_location(
    "image_fuzz_reference", FIXTURE / "make_reference.py"
)
reference_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_script)
IMAGES = reference_script.make_images()
REFERENCE = np.load(FIXTURE / "reference.npz")
SETTINGS = ClipImageSettings(shortest_edge=64, crop_height=64, crop_width=64)


def test_every_kind_of_odd_image_is_covered():
    modes = {image.mode for image in IMAGES.values()}
    assert {"I;16", "I", "F", "P", "PA", "LA", "RGBA", "RGBa", "1", "CMYK", "YCbCr"} <= modes
    sizes = [image.size for image in IMAGES.values()]
    assert (1, 1) in sizes and any(w == 1 for w, _ in sizes) and any(h == 1 for _, h in sizes)
    assert any(w / h >= 100 for w, h in sizes) and any(h / w >= 100 for w, h in sizes)
    assert set(IMAGES) == set(REFERENCE.files)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_preprocessing_matches_the_reference(name):
    mean = np.asarray(SETTINGS.image_mean, np.float32)[:, None, None]
    std = np.asarray(SETTINGS.image_std, np.float32)[:, None, None]
    expected = ((REFERENCE[name].astype(np.float64) / 255).astype(np.float32) - mean) / std
    got = preprocess([IMAGES[name]], SETTINGS)[0]
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
