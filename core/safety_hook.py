"""Where the pipeline calls safety filters: prompts before encoding, images after decoding.

The pipeline takes `safety_filters` as a list of `SafetyFilter` instances (or registry names),
or as one object that already groups filters and offers `check_prompt(prompt, negative_prompt)`
and `filter_images(images)` (the safety issue's `paddiff.safety.SafetyFilters`). A list is
wrapped in `FilterList`, which behaves the same way.
"""

from __future__ import annotations

from paddiff.interfaces import Verdict


class SafetyBlocked(Exception):
    """A prompt was refused; nothing was computed. `verdict` has the details (for logs);
    the message names only the category, so it can be shown to whoever sent the prompt."""

    def __init__(self, verdict: Verdict, field: str = "prompt"):
        self.verdict = verdict
        self.field = field  # "prompt" or "negative_prompt"
        self.category = verdict.category
        super().__init__(
            f"the {field.replace('_', ' ')} was refused by the safety filter "
            f"(category: {verdict.category or 'unspecified'})"
        )


class FilterList:
    """Every filter checks every prompt and image; refused images are replaced by black ones."""

    def __init__(self, filters):
        self.filters = list(filters)

    def check_prompt(self, prompt: str | None, negative_prompt: str | None = None) -> list:
        verdicts = []
        for field, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if not text:
                continue
            for safety_filter in self.filters:
                verdict = safety_filter.check_prompt(text)
                if not verdict.allowed:
                    raise SafetyBlocked(verdict, field)
                verdicts.append(verdict)
        return verdicts

    def filter_images(self, images: list) -> tuple[list, list[Verdict]]:
        """(images, one verdict per image: its first refusal, else an allowed verdict)."""
        verdicts = [Verdict(allowed=True) for _ in images]
        for safety_filter in self.filters:
            for index, verdict in enumerate(safety_filter.check_images(images)):
                if verdicts[index].allowed:
                    verdicts[index] = verdict
        return [_black_if_refused(im, v) for im, v in zip(images, verdicts, strict=True)], verdicts


def as_safety(safety_filters):
    """The pipeline's safety object for what a caller passed (None: no filtering)."""
    if safety_filters is None:
        return FilterList([])
    if hasattr(safety_filters, "filter_images") and hasattr(safety_filters, "prompt_filters"):
        return safety_filters  # already a group of filters
    if not isinstance(safety_filters, (list, tuple)):
        safety_filters = [safety_filters]
    import paddiff

    return FilterList(
        paddiff.get("safety_filters", f).from_config({}) if isinstance(f, str) else f
        for f in safety_filters
    )


def _black_if_refused(image, verdict: Verdict):
    if verdict.allowed:
        return image
    from PIL import Image

    return Image.new(image.mode, image.size)
