"""Serving limits and request validation (paddiff.serving), without PaddleHub or Paddle."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from paddiff import Verdict
from paddiff.serving import (
    RequestError,
    ServingLimits,
    decode_image,
    encode_png,
    jsonable,
    load_image,
    parse_request,
    verdict_json,
)
from PIL import Image

LIMITS = ServingLimits(
    max_pixels=128 * 128,
    max_steps=10,
    max_images=2,
    max_prompt_chars=20,
    allowed_schedulers=("DDIMScheduler", "EulerDiscreteScheduler"),
)


def png_base64(width=16, height=16, color=(10, 20, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_limits_from_environment_override_defaults():
    limits = ServingLimits.from_env(
        {
            "PADDIFF_MAX_PIXELS": "4096",
            "PADDIFF_MAX_STEPS": "8",
            "PADDIFF_ALLOWED_SCHEDULERS": "DDIMScheduler, EulerDiscreteScheduler",
            "PADDIFF_MAX_BODY_BYTES": "",
        }
    )
    assert limits.max_pixels == 4096 and limits.max_steps == 8
    assert limits.allowed_schedulers == ("DDIMScheduler", "EulerDiscreteScheduler")
    assert limits.max_body_bytes == ServingLimits().max_body_bytes
    assert limits.max_images == ServingLimits().max_images


@pytest.mark.parametrize("value", ["ten", "0", "-5", "1.5"])
def test_limits_from_environment_reject_non_positive_integers(value):
    with pytest.raises(ValueError, match="PADDIFF_MAX_STEPS must be a positive integer"):
        ServingLimits.from_env({"PADDIFF_MAX_STEPS": value})


def test_good_text_to_image_request_becomes_pipeline_arguments():
    request = parse_request(
        {
            "prompt": "一只猫",
            "negative_prompt": "blurry",
            "steps": 8,
            "guidance_scale": 7,
            "width": 128,
            "height": 64,
            "num_images": 2,
            "seed": 42,
            "eta": 0.5,
            "scheduler": "DDIMScheduler",
        },
        LIMITS,
    )
    assert request.method == "text_to_image"
    assert request.arguments == {
        "prompt": "一只猫",
        "negative_prompt": "blurry",
        "steps": 8,
        "guidance_scale": 7.0,
        "width": 128,
        "height": 64,
        "num_images": 2,
        "seed": 42,
        "eta": 0.5,
        "scheduler": "DDIMScheduler",
    }


def test_null_fields_mean_the_pipeline_default():
    request = parse_request({"prompt": "cat", "seed": None, "steps": None}, LIMITS)
    assert request.arguments == {"prompt": "cat"}


def test_image_and_mask_select_image_to_image_and_inpaint():
    image = parse_request({"prompt": "cat", "image": png_base64(), "strength": 0.5}, LIMITS)
    assert image.method == "image_to_image"
    assert image.arguments["image"].size == (16, 16) and image.arguments["strength"] == 0.5
    inpaint = parse_request(
        {"prompt": "cat", "image": png_base64(), "mask_image": png_base64(color=(255,) * 3)},
        LIMITS,
    )
    assert inpaint.method == "inpaint"
    assert inpaint.arguments["mask_image"].getpixel((0, 0)) == (255, 255, 255)


def test_data_url_images_are_accepted():
    request = parse_request(
        {"prompt": "cat", "image": "data:image/png;base64," + png_base64()}, LIMITS
    )
    assert request.arguments["image"].getpixel((3, 3)) == (10, 20, 30)


BAD_REQUESTS = [
    ({"steps": 4}, "'prompt' is required"),
    ({"prompt": 5}, "'prompt' must be a string, got int"),
    ({"prompt": "  "}, "'prompt' must not be empty"),
    ({"prompt": "x" * 21}, "'prompt' has 21 characters; this server allows at most 20"),
    ({"prompt": "cat", "negative_prompt": ["a"]}, "'negative_prompt' must be a string"),
    ({"prompt": "cat", "steps": "8"}, "'steps' must be an integer, got '8'"),
    ({"prompt": "cat", "steps": 8.0}, "'steps' must be an integer"),
    ({"prompt": "cat", "steps": True}, "'steps' must be an integer"),
    ({"prompt": "cat", "steps": 0}, "'steps' must be between 1 and 10, got 0"),
    ({"prompt": "cat", "steps": 10**12}, "'steps' must be between 1 and 10"),
    ({"prompt": "cat", "num_images": 3}, "'num_images' must be between 1 and 2, got 3"),
    ({"prompt": "cat", "seed": -1}, "'seed' must be between 0 and"),
    ({"prompt": "cat", "seed": 2**64}, "'seed' must be between 0 and"),
    ({"prompt": "cat", "width": -64}, "'width' must be between 8 and"),
    ({"prompt": "cat", "width": 256, "height": 128}, "width*height is 256x128 = 32768 pixels"),
    ({"prompt": "cat", "guidance_scale": "high"}, "'guidance_scale' must be a number"),
    ({"prompt": "cat", "guidance_scale": 1e9}, "'guidance_scale' must be between"),
    ({"prompt": "cat", "eta": -0.1}, "'eta' must be between 0.0 and 1.0"),
    ({"prompt": "cat", "scheduler": "PNDMScheduler"}, "scheduler 'PNDMScheduler' is not allowed"),
    ({"prompt": "cat", "scheduler": 3}, "'scheduler' must be a scheduler name"),
    ({"prompt": "cat", "strength": 0.5}, "'strength' applies only with an 'image'"),
    ({"prompt": "cat", "image": 12}, "'image' must be a base64 string, got int"),
    ({"prompt": "cat", "image": "not base64!"}, "'image' is not valid base64"),
    ({"prompt": "cat", "image": "aGVsbG8="}, "'image' is not an image PIL can read"),
    ({"prompt": "cat", "image": png_base64(256, 256)}, "'image' is 256x256; this server"),
    ({"prompt": "cat", "mask_image": png_base64()}, "'mask_image' needs an 'image'"),
    ({"prompt": "cat", "size": 64}, "unknown field(s) size; accepted: prompt"),
]


@pytest.mark.parametrize("fields, message", BAD_REQUESTS)
def test_bad_requests_are_refused_with_a_message_naming_the_field(fields, message):
    with pytest.raises(RequestError) as error:
        parse_request(fields, LIMITS)
    assert message in str(error.value)


def test_scheduler_message_lists_the_allowed_ones():
    with pytest.raises(RequestError, match="allows: DDIMScheduler, EulerDiscreteScheduler"):
        parse_request({"prompt": "cat", "scheduler": "Nope"}, LIMITS)


def test_without_a_scheduler_list_the_pipeline_checks_the_name():
    request = parse_request({"prompt": "cat", "scheduler": "dpm++2m-karras"}, ServingLimits())
    assert request.arguments["scheduler"] == "dpm++2m-karras"


def test_load_image_accepts_pil_numpy_path_and_base64(tmp_path):
    pil = Image.new("RGB", (8, 6), (200, 100, 0))
    path = tmp_path / "in.png"
    pil.save(path)
    as_uint8 = np.asarray(pil)
    as_float = as_uint8.astype(np.float32) / 255
    for source in (pil, as_uint8, as_float, str(path), path, png_base64(8, 6, (200, 100, 0))):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (8, 6)
        assert image.getpixel((1, 1)) == (200, 100, 0)


def test_load_image_rejects_other_types():
    with pytest.raises(TypeError, match="must be a PIL image, a NumPy array"):
        load_image(3.5)
    with pytest.raises(ValueError, match="HxW, HxWx3 or HxWx4"):
        load_image(np.zeros((2, 3, 5), np.uint8))


def test_a_missing_image_file_is_named_as_such_not_as_bad_base64(tmp_path):
    # `hub run paddiff --image cat.png` with a typo used to answer "'image' is not valid base64"
    with pytest.raises(FileNotFoundError, match="mask_image file not found: .*mask.png"):
        load_image(str(tmp_path / "mask.png"), "mask_image")


def test_png_round_trip_and_json_settings():
    image = Image.new("RGB", (4, 4), (1, 2, 3))
    back = decode_image(encode_png(image), "image", LIMITS)
    assert back.getpixel((2, 2)) == (1, 2, 3)
    settings = {"seed": np.int64(3), "scale": np.float32(0.5), "size": (64, 64), "x": object}
    as_json = jsonable(settings)
    assert as_json["seed"] == 3 and type(as_json["seed"]) is int
    assert as_json["scale"] == 0.5 and as_json["size"] == [64, 64]
    assert isinstance(as_json["x"], str)


def test_verdicts_in_responses_leave_out_the_matched_term_and_details():
    verdict = Verdict(
        allowed=False,
        reason="violence",
        category="violence",
        matched="gore",
        filter="terms",
        details={"position": 3},
    )
    assert verdict_json(verdict) == {
        "allowed": False,
        "category": "violence",
        "reason": "violence",
        "filter": "terms",
    }
    assert verdict_json(None) is None


def test_one_missing_side_counts_at_the_models_size():
    request = {"prompt": "cat", "width": 256}
    assert parse_request(request, LIMITS).arguments["width"] == 256  # size unknown: unchecked
    with pytest.raises(RequestError, match="256x128 = 32768 pixels"):
        parse_request(request, LIMITS, default_size=(128, 128))
    assert parse_request({"prompt": "cat", "height": 128}, LIMITS, default_size=(128, 128))
