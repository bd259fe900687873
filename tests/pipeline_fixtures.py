"""Pipelines over the real Paddle components, built from the tiny fixture model folders."""

from __future__ import annotations

import json
from pathlib import Path

MODELS = Path(__file__).parent / "fixtures" / "sd"
REFERENCES = Path(__file__).parent / "fixtures" / "pipeline"

#: model_index.json entry -> (registry kind, pipeline component name)
_PARTS = {
    "text_encoder": ("text_encoders", "text_encoder"),
    "unet": ("denoisers", "denoiser"),
    "vae": ("vaes", "vae"),
}


def fixture_pipeline(name: str = "sd1", scheduler: str | None = None, **options):
    """A `Pipeline` for tests/fixtures/sd/<name>, loaded through the registry; `scheduler` names
    a scheduler class to use with the folder's scheduler config instead of the one it names."""
    import paddiff
    from paddiff.pipeline import Pipeline

    folder = MODELS / name
    index = json.loads((folder / "model_index.json").read_text())
    components = {
        component: paddiff.get(kind, index[entry][1]).from_pretrained(folder / entry)
        for entry, (kind, component) in _PARTS.items()
    }
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler_class = paddiff.get("schedulers", scheduler or scheduler_config["_class_name"])
    components["scheduler"] = scheduler_class.from_config(scheduler_config)
    return Pipeline(**components, model_name=name, model_path=folder, **options)
