"""`paddiff generate`, `img2img` and `inpaint` on the toy components (in this process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import paddiff
import paddiff.pipeline
import pytest
from paddiff.cli import main
from paddiff.weights import save_state_dict
from PIL import Image

from support.helpers import ROOT
from support.pipeline_toys import toy_pipeline
from support.weights_formats import to_original, with_full_clip_vocabulary


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
    monkeypatch.setattr(paddiff.loader, "embedded_model_path", lambda: None)
    assert main(["generate", "a cat", "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "embedded default model is not installed" in error and "--model" in error


def test_import_paddiff_stays_cheap_and_the_api_loads_on_first_use():
    code = (
        "import sys, paddiff\n"
        "assert 'numpy' not in sys.modules and 'paddle' not in sys.modules, sorted(sys.modules)\n"
        "assert paddiff.load_pipeline.__module__ == 'paddiff.loader'\n"
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


# -- real tiny models: single-file checkpoints and the loader options ------------------------------

SD = ROOT / "tests" / "fixtures" / "sd"
REAL = ["--steps", "1", "--width", "64", "--height", "64", "--no-progress"]


def _configs_but_the_text_encoder(tmp_path):
    """--config folder with the tiny UNet/VAE/scheduler configs (norm groups 8, which shapes
    cannot show); without text_encoder/ the text encoder's config stays inferred."""
    shutil.copytree(
        SD / "sd1", tmp_path / "configs", ignore=shutil.ignore_patterns("*.safetensors")
    )
    shutil.rmtree(tmp_path / "configs" / "text_encoder")
    return tmp_path / "configs"


def test_single_file_checkpoint_needs_no_tokenizer_folder(tmp_path, capsys):
    """An A1111-style file gets SD's CLIP tokenizer from the vocabulary paddiff ships."""
    checkpoint = tmp_path / "model.safetensors"
    save_state_dict(with_full_clip_vocabulary(to_original(SD / "sd1")), checkpoint)
    config = _configs_but_the_text_encoder(tmp_path)
    args = ["generate", "a cat", "--model", str(checkpoint), "--config", str(config), *REAL]
    assert main([*args, "-o", str(tmp_path / "cat.png")]) == 0
    assert (tmp_path / "cat.png").is_file()


def test_tokenizer_config_and_variant_options_reach_the_loader(tmp_path, capsys):
    checkpoint = str(ROOT / "tests" / "fixtures" / "weights" / "sd1.ckpt")
    out = str(tmp_path / "out.png")
    # the tiny checkpoint's cut vocabulary does not fit the shipped tokenizer: say what to pass
    assert main(["generate", "a cat", "--model", checkpoint, "-o", out, *REAL]) == 1
    assert "1514-token vocabulary" in capsys.readouterr().err
    tokenizer = ["--tokenizer", str(SD / "sd1" / "tokenizer"), "--config", str(SD / "sd1")]
    assert main(["generate", "a cat", "--model", checkpoint, *tokenizer, "-o", out, *REAL]) == 0
    assert Path(out).is_file()
    assert main(["generate", "a cat", "--model", str(SD / "sd1"), "--variant", "fp16", *REAL]) == 1
    assert "diffusion_pytorch_model.fp16.safetensors" in capsys.readouterr().err
    assert main(["generate", "a", "--model", checkpoint, "--config", "/no/such", *REAL]) == 1
    assert "config folder not found: /no/such" in capsys.readouterr().err
    assert main(["generate", "a", "--model", checkpoint, "--variant", "fp16", *REAL]) == 1
    assert "variant= (--variant) applies to model folders" in capsys.readouterr().err


def test_precision_option_reaches_the_exported_programs(tmp_path, capsys, monkeypatch):
    from paddiff.execution import predictor

    used = []
    real_init = predictor.Predictor.__init__

    def recording_init(self, prefix, threads=None, onednn=True, precision=None):
        used.append(precision)
        real_init(self, prefix, threads, onednn, "fp32")  # fp32 runs on every CPU

    monkeypatch.setattr(predictor.Predictor, "__init__", recording_init)
    monkeypatch.setenv("PADDIFF_CACHE_DIR", str(tmp_path / "programs"))
    monkeypatch.setattr(
        predictor, "resolve_precision", lambda p=None, check_hardware=True: p or "fp32"
    )
    import paddiff.execution.cache as cache

    monkeypatch.setattr(cache, "resolve_precision", lambda p=None, check_hardware=True: p or "fp32")
    model = ["--model", str(SD / "sd1"), "-o", str(tmp_path / "a.png"), *REAL]
    assert main(["generate", "a cat", *model, "--execution", "static", "--precision", "bf16"]) == 0
    assert used and set(used) == {"bf16"}
    with pytest.raises(SystemExit):  # argparse: not a choice
        main(["generate", "a cat", *model, "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_warnings_are_one_line_without_source_lines(tmp_path, capsys):
    long_prompt = "a cat " * 100
    args = ["generate", long_prompt, "--model", str(SD / "sd1"), "-o", str(tmp_path), *REAL]
    assert main(args) == 0
    error = capsys.readouterr().err
    assert "paddiff: warning: prompt has 300 tokens but the text encoder reads only 75" in error
    assert "pipeline.py" not in error and "ccache" not in error


def test_unwritable_outputs_are_refused_before_loading_the_model(toy_model, tmp_path, capsys):
    (tmp_path / "notes").write_text("not a folder")
    (tmp_path / "dir.png").mkdir()
    for output, message in [
        (tmp_path / "notes", "is a file, so it cannot be written to"),
        (tmp_path / "notes" / "cat.png", "is a file, not a folder"),
        (tmp_path / "dir.png", "is a folder, so it cannot be written to"),
    ]:
        assert main(["generate", "a cat", "-o", str(output), "--no-progress"]) == 1
        assert message in capsys.readouterr().err
    assert toy_model == []  # nothing was loaded or generated
    nested = tmp_path / "new" / "deeper" / "cat.png"
    assert main(["generate", "a cat", "-o", str(nested), "--steps", "1", "--no-progress"]) == 0
    assert nested.is_file()


def test_a_failed_png_write_leaves_no_file_behind(tmp_path, monkeypatch):
    from paddiff.png_info import save_image

    image = Image.new("RGB", (8, 8))

    def fail_half_way(path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(image, "save", fail_half_way)
    with pytest.raises(OSError, match="No space left"):
        save_image(image, {"prompt": "a cat"}, tmp_path / "cat.png")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_ends_with_one_line_and_status_130(toy_model, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("paddiff.commands.generate.run_generation", interrupted)
    assert main(["generate", "a cat", "-o", str(tmp_path), "--no-progress"]) == 130
    assert capsys.readouterr().err == "paddiff: interrupted\n"
