"""paddiff's embedded default model: a small bilingual text-to-image model that the project trains
itself on procedurally drawn shapes (`dataset`), with its own training code (`train`) and an
independent evaluator (`evaluate`). The trained weights live in `model/`, in diffusers layout."""

from pathlib import Path

#: The exported model folder (diffusers layout), installed with the package.
MODEL_DIR = Path(__file__).resolve().parent / "model"
