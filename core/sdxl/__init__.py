"""SDXL (base and refiner): two text encoders, pooled embeddings, micro-conditioning, and the
base + refiner hand-off. See docs/sdxl.md."""

from __future__ import annotations


def pipeline_class(components: dict, default):
    """The pipeline class for loaded components: `SDXLPipeline` when the text encoder gives
    pooled embeddings (SDXL's), else `default`."""
    if callable(getattr(components.get("text_encoder"), "encode_with_pooled", None)):
        from paddiff.sdxl.pipeline import SDXLPipeline

        return SDXLPipeline
    return default
