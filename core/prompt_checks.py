"""Warnings about a prompt that only the package shipping a model can give.

A package that ships a model folder through the `paddiff.models` entry-point group may register,
under the same entry name in `paddiff.prompt_checks`, a function `prompt -> str | None`: the
warning to show for that prompt with that model, or None. The embedded model registers
`paddiff.plugins.embedded.lexicon:unknown_words_warning`, which names the words of a prompt the
model never learnt, in the prompt's language; the image is generated all the same.
"""

from __future__ import annotations

import functools
import warnings
from importlib import metadata
from pathlib import Path

MODELS_GROUP = "paddiff.models"
PROMPT_CHECKS_GROUP = "paddiff.prompt_checks"


class PromptWordsWarning(UserWarning):
    """The model does not know some words of the prompt (it still generates)."""


@functools.cache
def checks_for(model_path: Path) -> tuple:
    """The prompt checks registered for the shipped model folder `model_path` (none for others)."""
    checks = {e.name: e for e in metadata.entry_points(group=PROMPT_CHECKS_GROUP)}
    found = []
    for entry in metadata.entry_points(group=MODELS_GROUP):
        if entry.name not in checks:
            continue
        folder = entry.load()()
        if folder is not None and Path(folder).resolve() == model_path:
            found.append(checks[entry.name].load())
    return tuple(found)


def warn_about_prompts(model_path: Path | None, prompts) -> list[str]:
    """Warn (PromptWordsWarning) what the model's prompt checks say; the messages, in order."""
    if model_path is None:
        return []
    messages = []
    for check in checks_for(Path(model_path).resolve()):
        for prompt in dict.fromkeys(p for p in prompts if p):
            message = check(prompt)
            if message:
                messages.append(message)
                warnings.warn(message, PromptWordsWarning, stacklevel=4)
    return messages
