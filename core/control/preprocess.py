"""Control images from pictures, through the `paddiff.preprocessors` plugins."""

from __future__ import annotations

from paddiff import registry
from paddiff.images import load_image


def preprocessor_names() -> list[str]:
    return registry.default_registry().names("preprocessors")


def preprocess(name: str, image, **options):
    """The control image (an RGB PIL image) that preprocessor `name` makes from `image` (a path,
    PIL image or array). An unknown name raises `paddiff.registry.UnknownPluginError` listing
    the known ones; an unknown option raises ValueError listing the preprocessor's options."""
    cls = registry.get("preprocessors", name)
    return cls.from_config(options)(load_image(image, "control image"))
