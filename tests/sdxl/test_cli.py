"""`paddiff generate --model <SDXL folder>`: the command line finds SDXL from the folder and
draws what the library draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddiff
from paddiff.cli import main
from PIL import Image

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdxl"


def test_generate_with_an_sdxl_folder(tmp_path, capsys):
    target = tmp_path / "cat.png"
    arguments = ["--steps", "2", "--width", "32", "--height", "32", "--seed", "3"]
    code = main(
        ["generate", "a red cat", "--model", str(FIXTURES / "base"), "-o", str(target)]
        + arguments
        + ["--no-progress", "--execution", "dynamic"]
    )
    assert code == 0, capsys.readouterr()
    pipe = paddiff.load_pipeline(FIXTURES / "base", execution="dynamic")
    expected = pipe.text_to_image(
        "a red cat", steps=2, width=32, height=32, seed=3, progress=False
    ).images[0]
    with Image.open(target) as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), np.asarray(expected))
        assert "Seed: 3, Size: 32x32" in image.text["parameters"]
