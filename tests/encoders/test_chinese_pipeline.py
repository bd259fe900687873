"""Whole Taiyi-like and AltDiffusion-like pipelines equal diffusers' images within 2/255.

The model folders are assembled as tests/fixtures/chinese/make_reference.py assembles them (one
function, tests/support/fixture_configs.py): the SD 1.x test fixture's unet/, vae/ and scheduler/
with this area's text_encoder/ and tokenizer/.
The references (txt2img_<name>.npz, same format as tests/fixtures/pipeline) come from diffusers'
StableDiffusionPipeline (Taiyi) and AltDiffusionPipeline, started from the stored latents.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddiff
import pytest

from support.fixture_configs import assemble_chinese_pipeline

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chinese"
TOLERANCE = 2  # per pixel, out of 255


@pytest.mark.parametrize("name", ["taiyi_like", "altdiffusion_like"])
def test_chinese_prompts_give_the_reference_images(tmp_path, name):
    load_pipeline = getattr(paddiff, "load_pipeline", None)
    if load_pipeline is None:
        pytest.skip("paddiff.load_pipeline is not merged yet")
    with np.load(FIXTURES / f"txt2img_{name}.npz") as data:
        ref = {key: data[key] for key in data.files}
    pipe = load_pipeline(
        assemble_chinese_pipeline(name, tmp_path / name), scheduler=str(ref["scheduler"])
    )
    size = int(ref["size"])
    result = pipe.text_to_image(
        [str(p) for p in ref["prompts"]],
        negative_prompt=str(ref["negative_prompt"]),
        latents=ref["latents"],
        seed=[0, 1],
        steps=int(ref["steps"]),
        guidance_scale=float(ref["guidance_scale"]),
        width=size,
        height=size,
        progress=False,
    )
    got = np.stack([np.asarray(image) for image in result.images]).astype(np.int16)
    difference = np.abs(got - ref["expected"].astype(np.int16))
    assert difference.max() <= TOLERANCE, f"max difference {difference.max()}/255"


@pytest.mark.parametrize(
    "name, tokenizer_class",
    [("taiyi_like", "BertTokenizer"), ("altdiffusion_like", "XLMRobertaTokenizer")],
)
def test_saved_chinese_models_name_their_own_tokenizer_class(tmp_path, name, tokenizer_class):
    from paddiff.loader import load_components, save_components

    components = load_components(assemble_chinese_pipeline(name, tmp_path / name))
    save_components(components, tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", tokenizer_class]
    original = json.loads((FIXTURES / name / "model_index.json").read_text())
    assert index["text_encoder"] == original["text_encoder"]  # as diffusers wrote it
    config = json.loads((tmp_path / "saved" / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == tokenizer_class
    again = load_components(tmp_path / "saved")["text_encoder"]
    prompts = ["一只红色的猫，油画", "a cat"]
    assert np.array_equal(again.tokenize(prompts), components["text_encoder"].tokenize(prompts))
