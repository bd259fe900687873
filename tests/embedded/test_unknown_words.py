"""With the embedded model, a prompt's words that the model never learnt are named in a warning in
the prompt's language (Python, command line; the hub's reply is checked in tests/hub), and the
image is generated all the same. Other models get no such warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from paddiff.plugins.embedded import MODEL_DIR
from paddiff.prompt_checks import PromptWordsWarning

from support.helpers import run_cli

pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / "model_index.json").is_file(), reason="embedded model not exported yet"
)
TINY_SD = Path(__file__).resolve().parents[1] / "fixtures" / "sd" / "sd1"


@pytest.fixture(scope="module")
def pipe():
    import paddiff

    return paddiff.load_pipeline()


def generate(pipe, prompts):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe.text_to_image(prompts, steps=2, seed=1, progress=False)
    return result, [str(w.message) for w in caught if w.category is PromptWordsWarning]


def test_a_chinese_prompt_gets_a_chinese_warning_naming_the_unknown_word(pipe):
    result, warned = generate(pipe, "一只猫")
    assert len(result.images) == 1 and np.asarray(result.images[0]).shape == (64, 64, 3)
    assert warned == result.prompt_warnings and len(warned) == 1
    assert "猫" in warned[0] and "不认识" in warned[0]


def test_each_prompt_is_checked_in_its_own_language(pipe):
    prompts = ["a photo of a cat", "蓝色背景上的红色圆形", "a red circle on a blue background"]
    result, warned = generate(pipe, prompts)
    assert len(result.images) == 3
    assert warned == [
        "the embedded model does not know these words of the prompt: photo, cat. It only learnt "
        "one simple shape (circle, square, triangle, star, ring, cross) in eight colours on a "
        "plain background; generating anyway."
    ]


@pytest.mark.skipif(not TINY_SD.is_dir(), reason="tiny SD fixture missing")
def test_other_models_get_no_vocabulary_warning():
    import paddiff

    other = paddiff.load_pipeline(str(TINY_SD))
    result, warned = generate(other, "一只猫")
    assert warned == [] and result.prompt_warnings == []


def test_the_command_line_warns_on_stderr_and_still_writes_the_image(tmp_path):
    out = tmp_path / "cat.png"
    result = run_cli("generate", "一只猫", "-o", str(out), "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert "paddiff: warning: 内置模型不认识提示词中的：只、猫。" in result.stderr
    assert out.is_file()
