"""`paddiff generate`, `img2img` and `inpaint` on the toy components (in this process)."""

from __future__ import annotations

import subprocess
import sys

import paddiff
import paddiff.pipeline
import pytest
from paddiff.cli import main
from PIL import Image
from pipeline_toys import toy_pipeline


@pytest.fixture()
def toy_model(monkeypatch):
    """`load_pipeline` returns a toy pipeline; the model argument is recorded."""
    loaded = []

    def load(location=None, safety_filters=None, **kwargs):
        loaded.append(location)
        return toy_pipeline(safety_filters=safety_filters)

    monkeypatch.setattr(paddiff.pipeline, "load_pipeline", load)
    monkeypatch.setitem(vars(paddiff), "load_pipeline", load)
    return loaded


def test_generate_writes_pngs_with_parameters_and_prints_seeds(toy_model, tmp_path, capsys):
    code = main(
        [
            "generate",
            "a red cat",
            "-o",
            str(tmp_path / "out"),
            "-n",
            "2",
            "--seed",
            "5",
            "--steps",
            "3",
            "--negative",
            "blurry",
            "--no-progress",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  seed ")[1] for line in lines] == ["5", "6"]
    files = sorted((tmp_path / "out").glob("*.png"))
    assert [str(f) for f in files] == [line.split("  seed ")[0] for line in lines]
    with Image.open(files[1]) as image:
        text = image.text["parameters"]
    assert text.startswith("a red cat\nNegative prompt: blurry\nSteps: 3, ")
    assert "Seed: 6, Size: 32x32" in text
    assert toy_model == [None]


def test_single_file_output_and_its_misuse(toy_model, tmp_path, capsys):
    target = tmp_path / "cat.png"
    assert main(["generate", "a cat", "-o", str(target), "--steps", "1", "--no-progress"]) == 0
    assert target.is_file()
    assert main(["generate", "a cat", "-o", str(target), "-n", "2", "--no-progress"]) == 1
    assert "names one file but -n 2" in capsys.readouterr().err


def test_bad_settings_are_reported_without_a_traceback(toy_model, tmp_path, capsys):
    code = main(["generate", "a cat", "-o", str(tmp_path), "--width", "33", "--no-progress"])
    assert code == 1
    assert "width 33 is not a multiple of 8" in capsys.readouterr().err


def test_img2img_and_inpaint(toy_model, tmp_path, capsys):
    source, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.new("RGB", (32, 32), (20, 200, 20)).save(source)
    Image.new("L", (32, 32), 255).save(mask)
    assert (
        main(
            [
                "img2img",
                "a cat",
                "-i",
                str(source),
                "--strength",
                "0.5",
                "-o",
                str(tmp_path / "a.png"),
                "--steps",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "Denoising strength: 0.5" in Image.open(tmp_path / "a.png").text["parameters"]
    assert (
        main(
            [
                "inpaint",
                "a cat",
                "-i",
                str(source),
                "-m",
                str(mask),
                "-o",
                str(tmp_path / "b.png"),
                "--steps",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "inpaint",
                "a cat",
                "-i",
                str(source),
                "-m",
                str(tmp_path / "none.png"),
                "--no-progress",
            ]
        )
        == 1
    )
    assert "mask_image file not found" in capsys.readouterr().err


def test_without_a_model_or_the_embedded_one_the_error_says_what_to_do(monkeypatch, capsys):
    monkeypatch.setattr(paddiff.pipeline, "embedded_model_path", lambda: None)
    assert main(["generate", "a cat", "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "embedded default model is not installed" in error and "--model" in error


def test_import_paddiff_stays_cheap_and_the_api_loads_on_first_use():
    code = (
        "import sys, paddiff\n"
        "assert 'numpy' not in sys.modules and 'paddle' not in sys.modules, sorted(sys.modules)\n"
        "assert paddiff.load_pipeline.__module__ == 'paddiff.pipeline'\n"
        "assert issubclass(paddiff.ValidationError, ValueError)\n"
        "assert 'paddle' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prompts_go_through_the_safety_filters(toy_model, tmp_path, capsys):
    assert main(["generate", "a nude figure", "-o", str(tmp_path), "--no-progress"]) == 1
    assert "prompt was refused by the safety filter (category: sexual)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    config = tmp_path / "safety.json"
    config.write_text('{"enabled": false}')
    args = ["generate", "a nude figure", "-o", str(tmp_path / "out"), "--steps", "1"]
    assert main([*args, "--safety-config", str(config), "--no-progress"]) == 0


class FlagEveryImage(paddiff.SafetyFilter):
    """An image checker that refuses everything, to see what the CLI reports."""

    checks = ("images",)

    @classmethod
    def from_config(cls, config):
        return cls()

    def check_prompt(self, text):
        return paddiff.Verdict(True)

    def check_images(self, images):
        return [paddiff.Verdict(False, reason="test", category="test-category") for _ in images]


def test_cli_reports_what_is_checked_and_flagged_images(toy_model, tmp_path, capsys, monkeypatch):
    from paddiff.registry import Registry

    registry = Registry(paths=[str(tmp_path)])  # nothing installed: only what we register
    registry.register("safety_filters", "flag-every-image", FlagEveryImage)
    monkeypatch.setattr("paddiff.safety.default_registry", lambda: registry)
    config = tmp_path / "safety.json"
    config.write_text('{"filters": [{"name": "flag-every-image"}]}')
    args = ["generate", "a cat", "-o", str(tmp_path / "out"), "--steps", "1", "--no-progress"]
    assert main([*args, "--safety-config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "safety: prompt checking: OFF" in err
    assert "safety: image checking: FlagEveryImage" in err
    assert "replaced: flagged by the image checker (test-category)" in out
    (png,) = (tmp_path / "out").glob("*.png")
    with Image.open(png) as image:
        assert image.getextrema() == ((0, 0), (0, 0), (0, 0))  # blacked out
