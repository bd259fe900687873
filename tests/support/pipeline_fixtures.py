"""Pipelines over the real Paddle components, loaded from the tiny fixture model folders."""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).parents[1] / "fixtures" / "sd"
REFERENCES = Path(__file__).parents[1] / "fixtures" / "pipeline"


def fixture_pipeline(name: str = "sd1", scheduler: str | None = None):
    """`paddiff.load_pipeline` on tests/fixtures/sd/<name>; `scheduler` replaces the model's
    scheduler (made from the folder's scheduler config)."""
    import paddiff

    return paddiff.load_pipeline(MODELS / name, scheduler=scheduler)
