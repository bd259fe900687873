"""paddiff's embedded default model: a small bilingual text-to-image model that the project trains
itself on procedurally drawn shapes (`dataset`), with its own training code (`train`) and an
independent evaluator (`evaluate`). The trained weights live in `model/`, in diffusers layout."""

from pathlib import Path

#: The exported model folder (diffusers layout), installed with the package.
MODEL_DIR = Path(__file__).resolve().parent / "model"


def model_folder() -> Path | None:
    """The `paddiff.models` entry point `embedded`: the model folder, if it is installed (it is
    trained and exported by this package's own scripts, so a source checkout may lack it)."""
    return MODEL_DIR if (MODEL_DIR / "model_index.json").is_file() else None
