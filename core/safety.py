"""Safety filters as the operator configures them: what the pipeline, CLI and serving call.

The operator's configuration (a dict, or the path of a JSON file holding one) says which
`paddiff.safety_filters` plugins run and with which options:

    {"enabled": true,
     "check_negative_prompt": true,
     "filters": [
        {"name": "PromptTermFilter", "term_files": ["/etc/paddiff/terms.txt"]},
        {"name": "StableDiffusionSafetyChecker", "weights": "/models/sd15/safety_checker"}
     ]}

`load_filters(config, model_dir)` builds them through the registry and returns `SafetyFilters`.
Whether filters run is decided here, once, by the server; nothing in a request can switch them
off. A blocked prompt raises `SafetyBlocked`, whose message names the category and never the
matched term. Flagged images are replaced (black) and reported, not raised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paddiff.interfaces import SafetyFilter, Verdict
from paddiff.registry import Registry, default_registry

logger = logging.getLogger("paddiff.safety")

IMAGE_CHECKER = "StableDiffusionSafetyChecker"
#: With no configuration at all: the shipped term lists, and the model's own checker if it has one.
DEFAULT_CONFIG = {"filters": [{"name": "PromptTermFilter"}, {"name": IMAGE_CHECKER}]}


class SafetyBlocked(Exception):
    """A prompt was refused. `verdict` holds the details (matched term included, for logs);
    `str(error)` names only the category, so it is safe to show to the requester."""

    def __init__(self, verdict: Verdict, field: str = "prompt"):
        self.verdict = verdict
        self.field = field  # "prompt" or "negative_prompt"
        self.category = verdict.category
        super().__init__(
            f"the {field.replace('_', ' ')} was refused by the safety filter "
            f"(category: {verdict.category or 'unspecified'})"
        )


@dataclass
class SafetyFilters:
    """The filters a server runs, with a plain account of what is checked."""

    prompt_filters: list[SafetyFilter] = field(default_factory=list)
    image_filters: list[SafetyFilter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. why image checking is off
    # Negative prompts often list exactly what to avoid ("nsfw, nude"); an operator may decide
    # not to check them. Checked by default.
    check_negative_prompt: bool = True

    @property
    def image_checking(self) -> bool:
        return bool(self.image_filters)

    def status(self) -> str:
        """One line per fact, for start-up logs and `paddiff` output."""
        prompt = ", ".join(_name(f) for f in self.prompt_filters) or "OFF"
        image = ", ".join(_name(f) for f in self.image_filters) or "OFF"
        lines = [f"prompt checking: {prompt}", f"image checking: {image}", *self.notes]
        if self.prompt_filters and not self.check_negative_prompt:
            lines.append("negative prompts are not checked (server configuration)")
        return "\n".join(lines)

    def with_image_filters(self, other: SafetyFilters) -> SafetyFilters:
        """These prompt filters with `other`'s image filters: the two halves of one
        configuration, loaded at different times (`load_filters(..., checks=...)`)."""
        return SafetyFilters(
            self.prompt_filters,
            other.image_filters,
            list(dict.fromkeys([*self.notes, *other.notes])),
            self.check_negative_prompt,
        )

    def check_prompt(self, prompt: str, negative_prompt: str | None = None) -> list[Verdict]:
        """Run every prompt filter on the prompt and the negative prompt, before any compute.
        Returns the verdicts (all allowed) or raises SafetyBlocked at the first refusal."""
        verdicts = []
        texts = [("prompt", prompt)]
        if self.check_negative_prompt:
            texts.append(("negative_prompt", negative_prompt))
        for name, text in texts:
            if not text:
                continue
            for safety_filter in self.prompt_filters:
                verdict = safety_filter.check_prompt(text)
                if not verdict.allowed:
                    raise SafetyBlocked(verdict, name)
                verdicts.append(verdict)
        return verdicts

    def filter_images(self, images):
        """(images, verdicts), one verdict per image: the first refusal, else an allowed one.

        `images` is a list of PIL images or an NCHW array in [-1, 1]; the same kind comes back,
        with flagged images replaced (black) by the filter that flagged them.
        """
        count = len(images)
        verdicts: list[Verdict] = [Verdict(allowed=True) for _ in range(count)]
        for safety_filter in self.image_filters:
            if hasattr(safety_filter, "filter_images"):
                images, found = safety_filter.filter_images(images)
            else:
                found = safety_filter.check_images(images)
                images = _black_out(images, found)
            for index, verdict in enumerate(found):
                if verdicts[index].allowed:
                    verdicts[index] = verdict
        return images, verdicts


def load_filters(
    config: dict | str | Path | None = None,
    model_dir: str | Path | None = None,
    registry: Registry | None = None,
    checks: tuple[str, ...] = ("prompts", "images"),
) -> SafetyFilters:
    """Build the configured filters (see the module docstring; None means DEFAULT_CONFIG).

    An image checker entry without `weights` uses `<model_dir>/safety_checker` when it exists;
    when it does not, image checking is off and `status()` says so. Explicitly configured weights
    that are missing are an error, so that a typo cannot silently turn checking off.

    `checks=("prompts",)` builds only the filters that check prompts: no image checker weights
    are read, so prompts can be refused before anything is loaded (`check_prompt`).
    """
    config = _read_config(config)
    if not isinstance(config, dict):
        raise ValueError(f"safety config: expected a JSON object, got {type(config).__name__}")
    unknown = set(config) - {"enabled", "check_negative_prompt", "filters"}
    if unknown:
        raise ValueError(f"safety config: unknown key(s) {sorted(unknown)}")
    for key in ("enabled", "check_negative_prompt"):
        if not isinstance(config.get(key, True), bool):
            raise ValueError(f"safety config: {key!r} must be true or false, got {config[key]!r}")
    filters = SafetyFilters(check_negative_prompt=config.get("check_negative_prompt", True))
    if not config.get("enabled", True):
        filters.notes.append("safety filters are disabled in the server configuration")
        return filters
    registry = registry or default_registry()
    # No "filters" key means the default filters ({"check_negative_prompt": false} alone must not
    # switch every filter off); "filters": [] is how to ask for none.
    entries = config.get("filters", DEFAULT_CONFIG["filters"])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"safety config: 'filters' must be a list of objects, got {entries!r}")
    for entry in entries:
        if "name" not in entry:
            raise ValueError(f"safety config: a filter entry has no 'name': {entry}")
        entry = dict(entry)
        checks_given = entry.pop("checks", None)
        if entry["name"] == IMAGE_CHECKER and not checks_given:
            declared = ("images",)  # known without importing the checker (and Paddle)
        else:
            cls = registry.get("safety_filters", entry["name"])
            declared = checks_given or getattr(cls, "checks", ("prompts", "images"))
        if not set(declared) & set(checks):
            continue  # not asked for: not built, no weights read
        if entry["name"] == IMAGE_CHECKER and not entry.get("weights"):
            folder = Path(model_dir) / "safety_checker" if model_dir else None
            if folder is None or not folder.is_dir():
                where = (
                    f"{model_dir} has no safety_checker/ folder"
                    if model_dir
                    else "no model folder was given"
                )
                filters.notes.append(
                    f"image checking is OFF: no checker weights were configured and {where}"
                )
                continue
            entry["weights"] = str(folder)
        instance = registry.get("safety_filters", entry["name"]).from_config(entry)
        kinds = checks_given or _default_checks(instance)
        if "prompts" in kinds and "prompts" in checks:
            filters.prompt_filters.append(instance)
        if "images" in kinds and "images" in checks:
            filters.image_filters.append(instance)
    for note in filters.status().splitlines():
        logger.info(note)
    return filters


def check_prompt(
    prompt,
    negative_prompt=None,
    config: SafetyFilters | dict | str | Path | None = None,
    registry: Registry | None = None,
) -> list[Verdict]:
    """Run the configured prompt filters on prompts without a pipeline or any model, so that a
    refused prompt costs no model load (docs/pipeline.md). The CLI and the PaddleHub module
    call it before loading; the pipeline checks again before encoding.

    `prompt` and `negative_prompt` are strings, lists of strings or None; `config` is what
    `load_filters` takes (only its prompt filters are built) or a `SafetyFilters`. Returns the
    verdicts (all allowed) or raises `SafetyBlocked` at the first refusal.
    """
    if isinstance(config, SafetyFilters):
        filters = config
    else:
        filters = load_filters(config, registry=registry, checks=("prompts",))
    verdicts = []
    for text in [prompt] if isinstance(prompt, str) or prompt is None else prompt:
        verdicts += filters.check_prompt(text)
    negatives = negative_prompt if isinstance(negative_prompt, (list, tuple)) else [negative_prompt]
    for text in negatives:
        verdicts += filters.check_prompt(None, text)
    return verdicts


def _read_config(config: dict | str | Path | None) -> dict[str, Any]:
    if config is None:
        return DEFAULT_CONFIG
    if isinstance(config, (str, Path)):
        path = Path(config)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the safety config {path}: {exc}") from exc
    return config


def _default_checks(instance: SafetyFilter) -> tuple[str, ...]:
    """Built-in filters check one thing each; a third-party filter is asked to check both
    unless its entry says `"checks": ["prompts"]` or `["images"]`."""
    return tuple(getattr(instance, "checks", ("prompts", "images")))


def _name(safety_filter: SafetyFilter) -> str:
    return getattr(safety_filter, "name", type(safety_filter).__name__)


def _black_out(images, verdicts: list[Verdict]):
    if all(v.allowed for v in verdicts):
        return images
    if hasattr(images, "shape"):  # NCHW array in [-1, 1]
        images = images.copy()
        for index, verdict in enumerate(verdicts):
            if not verdict.allowed:
                images[index] = -1.0
        return images
    from PIL import Image

    return [
        image if v.allowed else Image.new(image.mode, image.size)
        for image, v in zip(images, verdicts, strict=True)
    ]


def as_safety(safety_filters) -> SafetyFilters:
    """`SafetyFilters` for what a caller passed: None (no filtering), a `SafetyFilters` (as
    it is, e.g. from `paddiff.safety.load_filters`), or `SafetyFilter` instances / registry
    names, each checking what it declares in `checks` (both prompts and images by default)."""
    if isinstance(safety_filters, SafetyFilters):
        return safety_filters
    if safety_filters is None:
        return SafetyFilters()
    if not isinstance(safety_filters, (list, tuple)):
        safety_filters = [safety_filters]
    group = SafetyFilters()
    for item in safety_filters:
        instance = (
            default_registry().get("safety_filters", item).from_config({})
            if isinstance(item, str)
            else item
        )
        checks = getattr(instance, "checks", ("prompts", "images"))
        if "prompts" in checks:
            group.prompt_filters.append(instance)
        if "images" in checks:
            group.image_filters.append(instance)
    return group
