"""One definition of each fixture setting that a reference generator and its tests both use.

The generators (tests/fixtures/<area>/make_reference.py and the scripts beside them) run in a
separate torch + diffusers environment and record reference outputs; the tests replay those under
Paddle. Both sides import this module, the tests as `support.fixture_configs` (tests/ is on
pytest's pythonpath) and the generators after putting tests/ on `sys.path` themselves, so a
generator and its test cannot drift apart. It therefore imports neither paddle nor torch: plain
Python values, numpy and the standard library only.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# -- schedulers: tests/fixtures/schedulers/make_reference.py, tests/schedulers/ --------------------

#: Stable Diffusion 1.5's scheduler_config.json, as a model folder ships it (keys of other
#: schedulers and "_class_name" included on purpose: every scheduler must ignore what it does not
#: know). Every recorded scheduler case is this plus the case's overrides.
SD_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def stand_in_model(sample: np.ndarray, t: float) -> np.ndarray:
    """A smooth, deterministic fake denoiser output (float64 math, float32 result): the model the
    scheduler trajectories were recorded with, and are replayed with."""
    x = np.asarray(sample).astype(np.float64)
    return (0.3 * x * math.cos(t / 200) + 0.1 * np.sin(x + t / 1000)).astype(np.float32)


# -- tiny SD models: tests/fixtures/sd/make_reference.py, tests/models/test_parity.py ---------------

#: The tiny model folders, tests/fixtures/sd/<variant>/.
SD_VARIANTS = ("sd1", "sd2_v", "inpaint")

#: The UNet reference inputs: case -> (latent height and width, the batch's two timesteps). The odd
#: size upsamples to the skip connection's size rather than exactly 2x.
UNET_CASES = {"even": (16, [10.0, 981.0]), "odd": (9, [500.0, 500.0])}

# -- whole pipelines: tests/fixtures/pipeline/make_reference.py, tests/pipeline/test_parity.py -------

#: tests/fixtures/pipeline/<case>.npz, in the order they are recorded: the pipeline call, the tiny
#: model folder (tests/fixtures/sd/<model>), the inpainting strength, and the scheduler where it is
#: fixed (otherwise make_reference.py's --scheduler, DDIMScheduler by default). The Euler cases add
#: a sigma-based sampler (it scales the initial noise and the model input) and the v-prediction
#: model with its own scheduler ("leading" spacing).
PIPELINE_CASES = {
    "txt2img_sd1": {"call": "text_to_image", "model": "sd1"},
    "img2img_sd1": {"call": "image_to_image", "model": "sd1"},
    "inpaint_unet9": {"call": "inpaint", "model": "inpaint", "strength": 1.0},
    "inpaint_blend_sd1": {"call": "inpaint", "model": "sd1", "strength": 0.75},
    "txt2img_sd1_euler": {
        "call": "text_to_image",
        "model": "sd1",
        "scheduler": "EulerDiscreteScheduler",
    },
    "txt2img_sd2_v_euler": {
        "call": "text_to_image",
        "model": "sd2_v",
        "scheduler": "EulerDiscreteScheduler",
    },
}

# -- single-file checkpoints: tests/fixtures/weights/single_files.py, tests/weights/ ---------------

#: The original-layout single files kept in tests/fixtures/weights/: one per text-encoder family
#: and pickle / safetensors flavour. The tests derive the other combinations.
SINGLE_FILES = {"sd1": "sd1.ckpt", "sd2_v": "sd2_v.safetensors"}

# -- Chinese text encoders: tests/fixtures/chinese/*.py, tests/encoders/test_chinese_*.py ----------

#: The tiny model folders tests/fixtures/chinese/<folder>: the text encoder's class (its registry
#: name), the tokenizer window (model_max_length) and the key of the tokenizer's ids in
#: reference_token_ids.npz (None: the folder shares altdiffusion_like's tokenizer).
CHINESE_MODELS = {
    "taiyi_like": {"text_encoder": "BertModel", "max_length": 512, "token_ids": "bert"},
    "chinese_clip_like": {
        "text_encoder": "ChineseCLIPTextModel",
        "max_length": 52,
        "token_ids": "chinese_clip",
    },
    "altdiffusion_like": {
        "text_encoder": "RobertaSeriesModelWithTransformation",
        "max_length": 77,
        "token_ids": "xlm_roberta",
    },
    "altdiffusion_m9_like": {
        "text_encoder": "RobertaSeriesModelWithTransformation",
        "max_length": 77,
        "token_ids": None,
    },
}


def assemble_chinese_pipeline(name: str, target: Path) -> Path:
    """A Taiyi-like / AltDiffusion-like model folder at `target`: the tiny SD 1.x fixture's unet/,
    vae/ and scheduler/, tests/fixtures/chinese/<name>'s text_encoder/ and tokenizer/, and a
    model_index.json naming them as the published folders do."""
    sd1, chinese = FIXTURES / "sd" / "sd1", FIXTURES / "chinese" / name
    shutil.copytree(
        sd1, target, ignore=shutil.ignore_patterns("text_encoder", "tokenizer*", "*.npz")
    )
    for part in ("text_encoder", "tokenizer"):
        shutil.copytree(chinese / part, target / part)
    index = json.loads((sd1 / "model_index.json").read_text())
    index.update(json.loads((chinese / "model_index.json").read_text()))
    (target / "model_index.json").write_text(json.dumps(index))
    return target


# -- LoRA and textual inversion: tests/fixtures/lora/make_reference.py, tests/lora/ ----------------

#: Adapter weights of the recorded two-adapter case: set_adapters(["a", "b"], LORA_CASES["ab"]).
LORA_CASES = {"ab": [0.7, 0.4]}
#: Prompts whose text-encoder hidden states are recorded with each adapter case.
LORA_PROMPTS = ["a red circle on a white background", "", "a photo of a cat, 4k"]
#: Textual-inversion tokens of the fixtures -> number of vectors (learned_embeds has one; the
#: A1111 .pt two; the A1111 .safetensors three).
TI_TOKENS = {"<ti-one>": 1, "<ti-two>": 2, "<ti-three>": 3}
#: Prompts with the tokens, as str.format templates ({ti_one} -> "<ti-one>").
TI_PROMPTS = ["a photo of {ti_one} on a table", "{ti_two} and {ti_three}, a painting"]


def ti_prompts() -> list[str]:
    names = {token.strip("<>").replace("-", "_"): token for token in TI_TOKENS}
    return [template.format(**names) for template in TI_PROMPTS]


# -- SDXL: tests/fixtures/sdxl/make_reference.py, tests/sdxl/ ---------------------------------------

#: Prompts the text-encoder references encode (tokenized by both tokenizers).
SDXL_PROMPTS = ["a photograph of an astronaut riding a horse", "", "a red circle, blue square"]

#: tests/fixtures/sdxl/<case>.npz: the diffusers pipeline class, the tiny model folder
#: (tests/fixtures/sdxl/<model>) and the call's settings in diffusers' words; `size` is the
#: image side in pixels (the tiny VAE halves it).
SDXL_CASES = {
    "txt2img_base": {
        "call": "txt2img",
        "pipeline": "StableDiffusionXLPipeline",
        "model": "base",
        "settings": {
            "prompt": ["a red circle on a white background", "a blue square"],
            "negative_prompt": ["blurry, low quality"] * 2,
            "num_inference_steps": 5,
            "guidance_scale": 5.0,
            "size": 32,
        },
    },
    # no negative prompt: SDXL base's force_zeros_for_empty_prompt makes the negative zeros;
    # every micro-conditioning size given, the negative ones different
    "txt2img_microconditioning": {
        "call": "txt2img",
        "pipeline": "StableDiffusionXLPipeline",
        "model": "base",
        "settings": {
            "prompt": "a green triangle",
            "num_inference_steps": 4,
            "guidance_scale": 6.0,
            "original_size": [64, 48],
            "crops_coords_top_left": [4, 2],
            "target_size": [40, 36],
            "negative_original_size": [16, 24],
            "negative_crops_coords_top_left": [0, 8],
            "negative_target_size": [32, 32],
            "size": 32,
        },
    },
    "img2img_base": {
        "call": "img2img",
        "pipeline": "StableDiffusionXLImg2ImgPipeline",
        "model": "base",
        "seed": 1,
        "settings": {
            "prompt": "a green triangle",
            "negative_prompt": "blurry",
            "strength": 0.6,
            "num_inference_steps": 10,
            "guidance_scale": 5.0,
            "size": 32,
        },
    },
    "inpaint_base": {
        "call": "inpaint",
        "pipeline": "StableDiffusionXLInpaintPipeline",
        "model": "base",
        "seed": 2,
        "settings": {
            "prompt": "a yellow star",
            "negative_prompt": "blurry",
            "strength": 0.75,
            "num_inference_steps": 8,
            "guidance_scale": 6.0,
            "size": 32,
        },
    },
    "img2img_refiner": {
        "call": "img2img",
        "pipeline": "StableDiffusionXLImg2ImgPipeline",
        "model": "refiner",
        "seed": 3,
        "settings": {
            "prompt": "a green triangle",
            "negative_prompt": "blurry",
            "strength": 0.5,
            "num_inference_steps": 8,
            "guidance_scale": 5.0,
            "aesthetic_score": 7.0,
            "negative_aesthetic_score": 2.0,
            "size": 32,
        },
    },
    "handoff": {
        "call": "handoff",
        "settings": {
            "prompt": "a lighthouse at dusk",
            "negative_prompt": "blurry",
            "steps": 10,
            "guidance_scale": 5.0,
            "split": 0.8,
            "aesthetic_score": 6.0,
            "negative_aesthetic_score": 2.5,
            "size": 32,
        },
    },
}
