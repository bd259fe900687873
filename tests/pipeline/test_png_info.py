"""The PNG `parameters` chunk, in WebUI's layout, readable with Pillow."""

from __future__ import annotations

import paddiff
from paddiff.png_info import format_parameters, parse_parameters, sampler_label
from PIL import Image

SETTINGS = {
    "prompt": "a red cat, sitting",
    "negative_prompt": "blurry",
    "steps": 20,
    "sampler": "DPM++ 2M Karras",
    "guidance_scale": 7.0,
    "seed": 1,
    "width": 64,
    "height": 64,
    "model_hash": "0123456789",
    "model": "tiny",
    "strength": None,
}


def test_layout_matches_webui():
    text = format_parameters(SETTINGS)
    assert text == (
        "a red cat, sitting\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 64x64, "
        "Model hash: 0123456789, Model: tiny"
    )


def test_round_trip_through_a_png_file(tmp_path):
    settings = dict(SETTINGS, prompt="一只猫\nsecond line", model="a: b, c", strength=0.75)
    path = paddiff.save_image(Image.new("RGB", (8, 8)), settings, tmp_path / "x.png")
    with Image.open(path) as image:
        text = image.text["parameters"]
    assert text.startswith("一只猫\nsecond line\nNegative prompt: blurry\n")
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "一只猫\nsecond line"
    assert parsed["negative_prompt"] == "blurry"
    assert parsed["Model"] == "a: b, c"  # quoted on write, unquoted on read
    assert parsed["Denoising strength"] == "0.75" and parsed["Seed"] == "1"
    assert paddiff.read_parameters(path) == parsed


def test_no_negative_prompt_line_when_there_is_none():
    text = format_parameters(dict(SETTINGS, negative_prompt=None))
    assert "Negative prompt" not in text
    assert parse_parameters(text)["negative_prompt"] == ""


def test_sampler_labels():
    assert sampler_label("EulerAncestralDiscreteScheduler", {}) == "Euler a"
    dpm = {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    assert sampler_label("DPMSolverMultistepScheduler", dpm) == "DPM++ 2M Karras"
    sde3 = dict(dpm, algorithm_type="sde-dpmsolver++", solver_order=3, use_karras_sigmas=False)
    assert sampler_label("DPMSolverMultistepScheduler", sde3) == "DPM++ 3M SDE"
    assert sampler_label("LMSDiscreteScheduler", {"use_karras_sigmas": True}) == "LMS Karras"
    assert sampler_label("MyScheduler", {}) == "MyScheduler"


def test_model_hash_is_webui_style_for_a_file_and_covers_a_folders_weights(tmp_path):
    import hashlib

    from paddiff.model_hash import model_hash

    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    assert model_hash(checkpoint) == hashlib.sha256(b"weights").hexdigest()[:10]
    folder = tmp_path / "folder"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.safetensors").write_bytes(b"one")
    (folder / "model_index.json").write_text("{}")
    first = model_hash(folder)
    (folder / "model_index.json").write_text('{"changed": 1}')  # not a weight file
    assert model_hash(folder) == first
    (folder / "unet" / "w.safetensors").write_bytes(b"two")
    assert model_hash(folder) != first and len(first) == 10
    assert model_hash(tmp_path / "missing") == ""
