"""The built-in control-image makers (NumPy / Pillow only) and their plugin kind."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff import registry
from paddiff.control import preprocess, preprocessor_names
from PIL import Image


def square(size=64, lo=10, hi=12, background=0, fill=255) -> Image.Image:
    pixels = np.full((size, size, 3), background, np.uint8)
    pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = fill
    return Image.fromarray(pixels)


def white(image) -> np.ndarray:
    values = np.asarray(image)
    assert values.shape[2] == 3 and set(np.unique(values)) <= {0, 255}
    return values[..., 0] == 255


def test_builtins_are_registered_as_a_plugin_kind():
    assert {"canny", "scribble", "threshold", "invert", "none"} <= set(preprocessor_names())
    kinds = {record.kind for record in registry.list_plugins()}
    assert {"controlnets", "preprocessors"} <= kinds


def test_unknown_preprocessor_lists_the_known_ones():
    with pytest.raises(registry.UnknownPluginError) as info:
        preprocess("cany", square())
    message = str(info.value)
    assert "canny" in message and "scribble" in message


def test_unknown_option_lists_the_options():
    with pytest.raises(ValueError, match="low_threshold"):
        preprocess("canny", square(), low=5)


def test_canny_marks_the_outline_of_a_square_only():
    edges = white(preprocess("canny", square()))
    # the outline: rows/columns next to the square's border; nothing inside or far outside
    assert edges[16:48, 15:17].any(axis=1).all() and edges[15:17, 16:48].any(axis=0).all()
    assert not edges[20:44, 20:44].any()
    assert not edges[:12].any() and not edges[52:].any()
    # thin: at most two pixels wide across the left border
    assert edges[32, 10:22].sum() <= 2


def test_canny_thresholds_drop_weak_edges():
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[16:] = 40  # a straight step: L1 Sobel response 4 x 40 = 160, between 100 and 200
    faint = Image.fromarray(pixels)
    assert not white(preprocess("canny", faint)).any()  # no strong pixel to start from
    assert white(preprocess("canny", faint, low_threshold=50, high_threshold=150)).any()
    with pytest.raises(ValueError, match="low_threshold <= high_threshold"):
        preprocess("canny", faint, low_threshold=200, high_threshold=100)


def test_threshold_scribble_invert_none():
    picture = square()
    assert white(preprocess("threshold", picture)).sum() == 32 * 32
    sketch = square(background=255, fill=0)  # dark strokes on paper
    strokes = white(preprocess("scribble", sketch, thickness=0))
    assert strokes.sum() == 32 * 32
    assert white(preprocess("scribble", sketch)).sum() == 34 * 34  # thickened by one pixel
    assert np.array_equal(np.asarray(preprocess("invert", sketch)), np.asarray(picture))
    assert np.array_equal(np.asarray(preprocess("none", picture)), np.asarray(picture))
