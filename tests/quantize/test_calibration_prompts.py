"""Which prompts `paddiff quantize` calibrates on: the user's file, else the model folder's own
`calibration_prompts.txt`, else the built-in list."""

from __future__ import annotations

from paddiff.quantize import calibration

from support.pipeline_fixtures import MODELS


def test_a_model_folders_own_prompts_are_the_default_and_a_given_file_wins(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    assert calibration.read_prompts(None, model) == list(calibration.DEFAULT_PROMPTS)
    assert calibration.prompts_source(None, model) == "the built-in list"

    (model / calibration.MODEL_PROMPTS_FILE).write_text("# ours\na red circle\n\n红色圆形\n")
    assert calibration.read_prompts(None, model) == ["a red circle", "红色圆形"]
    assert "calibration_prompts.txt" in calibration.prompts_source(None, model)

    given = tmp_path / "mine.txt"
    given.write_text("a blue square\n")
    assert calibration.read_prompts(given, model) == ["a blue square"]
    assert calibration.prompts_source(given, model) == str(given)


def test_the_fixture_models_without_a_file_calibrate_on_the_built_in_list():
    assert calibration.read_prompts(None, MODELS / "sd1") == list(calibration.DEFAULT_PROMPTS)


def test_the_embedded_model_calibrates_on_captions_of_its_training_grammar():
    """Its folder's file is what `dataset.calibration_prompts` makes (re-made by the export),
    in both languages, every prompt in words the model knows, naming seen combinations only."""
    from paddiff.plugins.embedded import MODEL_DIR, dataset, lexicon

    prompts = calibration.read_prompts(None, MODEL_DIR)
    assert prompts == dataset.calibration_prompts()
    assert any(any("\u4e00" <= c <= "\u9fff" for c in p) for p in prompts)
    assert any(p.isascii() for p in prompts)
    for prompt in prompts:
        parsed = lexicon.parse(prompt)
        assert (parsed["shape"], parsed["fg"], parsed["bg"]) in dataset.SEEN, prompt
