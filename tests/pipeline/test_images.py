"""One `load_image` rule (paddiff.images) for the pipeline and for serving."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pytest
from paddiff import images, serving
from paddiff.validation import ValidationError
from PIL import Image

RGB = (200, 100, 0)
UINT8 = np.full((6, 8, 3), RGB, np.uint8)


def both(source, name="image"):
    """What the pipeline's and the server's entry points make of `source` (they must agree)."""
    ours, served = images.load_image(source, name), serving.load_image(source, name)
    assert ours.mode == served.mode == "RGB"
    assert np.array_equal(np.asarray(ours), np.asarray(served))
    return np.asarray(ours)


@pytest.mark.parametrize(
    "array",
    [
        UINT8,
        UINT8.astype(np.float32) / 255,  # float in [0, 1]
        UINT8.astype(np.float64) / 255,
        UINT8.astype(np.uint16) * 257,  # 16-bit
        np.dstack([UINT8, np.full((6, 8), 7, np.uint8)]),  # alpha is dropped, colour kept
    ],
    ids=["uint8", "float32", "float64", "uint16", "rgba"],
)
def test_arrays_of_every_accepted_kind_give_the_same_pixels(array):
    assert np.array_equal(both(array), UINT8)


def test_grey_arrays_repeat_in_three_channels():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    for array in (grey, grey[:, :, None], grey.astype(np.float32) / 255):
        assert np.array_equal(both(array), np.dstack([grey] * 3))


def test_bool_arrays_are_black_and_white_masks():
    mask = np.zeros((4, 4), bool)
    mask[1:3] = True
    assert np.array_equal(both(mask)[:, :, 0], mask * np.uint8(255))


@pytest.mark.parametrize("values", [[-1.0, 1.0], [0.0, 1.5], [np.nan, 0.5]], ids=str)
def test_floats_outside_0_1_are_refused_not_clipped(values):
    array = np.array([values] * 2, np.float32)
    for load in (images.load_image, serving.load_image):
        with pytest.raises(ValidationError, match=r"mask float array must hold finite values in"):
            load(array, "mask")


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.complex64])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(ValidationError, match="must be uint8, uint16, bool or float"):
        images.load_image(np.zeros((2, 2), dtype))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257 * 10, 65535]], np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert both(path)[0, :, 0].tolist() == [0, 10, 255]
    encoded = base64.b64encode(path.read_bytes()).decode()
    assert np.asarray(serving.load_image(encoded))[0, :, 0].tolist() == [0, 10, 255]


def test_palette_with_transparency_and_grey_alpha_images(tmp_path):
    palette = Image.new("P", (2, 2))
    palette.putpalette([*RGB] * 256)
    palette.info["transparency"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "palette images with transparency" warning
        assert both(palette)[0, 0].tolist() == list(RGB)
    grey_alpha = Image.new("LA", (2, 2), (90, 0))
    assert both(grey_alpha)[0, 0].tolist() == [90, 90, 90]


def test_files_and_pil_images_follow_the_same_rule(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(UINT8).save(path)
    assert np.array_equal(both(path), UINT8) and np.array_equal(both(str(path)), UINT8)
    assert np.array_equal(both(Image.fromarray(UINT8).convert("RGBA")), UINT8)


def test_base64_png_decodes_by_the_same_rule():
    buffer = io.BytesIO()
    Image.fromarray(UINT8).quantize(4).save(buffer, format="PNG")  # a palette PNG
    image = serving.load_image(base64.b64encode(buffer.getvalue()))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), UINT8)


def test_bad_shapes_and_types_name_the_argument():
    with pytest.raises(ValidationError, match=r"mask_image array must be HxW, HxWx3 or HxWx4"):
        images.load_image(np.zeros((3, 8, 8), np.uint8), "mask_image")
    with pytest.raises(ValidationError, match="image must be a file path, a PIL image"):
        images.load_image(3.5)
