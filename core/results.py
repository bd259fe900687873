"""What generation returns, and the errors that stop it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from paddiff.interfaces import Verdict


class GenerationCancelled(RuntimeError):
    """The step callback asked to stop."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"generation cancelled by the callback after step {step}")


@dataclass
class StepInfo:
    """What the per-step callback receives. Return False from the callback to cancel."""

    step: int  # 0-based index of the step just taken
    total_steps: int
    timestep: float
    latents: np.ndarray  # the batch's current latents, (images, channels, h, w)


@dataclass
class GenerationResult:
    """Images, the settings that made each one, and the safety verdicts: one per image (its
    first refusal, else an allowed verdict) and those on the prompts."""

    images: list
    settings: list[dict]
    verdicts: list[Verdict] = field(default_factory=list)
    prompt_verdicts: list[Verdict] = field(default_factory=list)
    #: warnings about the prompts that the model's package gave (paddiff.prompt_checks)
    prompt_warnings: list[str] = field(default_factory=list)

    def save(self, target: str | Path, prefix: str = "") -> list[Path]:
        """Write PNGs with their settings: to `target` if it names a .png file (one image), or
        numbered files in the folder `target`."""
        from paddiff.png_info import save_image

        target = Path(target)
        if target.suffix.lower() == ".png":
            if len(self.images) != 1:
                raise ValueError(f"{len(self.images)} images cannot all be saved as {target}")
            target.parent.mkdir(parents=True, exist_ok=True)
            return [save_image(self.images[0], self.settings[0], target)]
        target.mkdir(parents=True, exist_ok=True)
        first = _next_free_number(target, prefix)
        return [
            save_image(image, settings, target / f"{prefix}{first + i:05d}-{settings['seed']}.png")
            for i, (image, settings) in enumerate(zip(self.images, self.settings, strict=True))
        ]


def _next_free_number(folder: Path, prefix: str) -> int:
    numbers = [
        int(p.name[len(prefix) :].split("-")[0])
        for p in folder.glob(f"{prefix}*.png")
        if p.name[len(prefix) :].split("-")[0].isdigit()
    ]
    return max(numbers, default=-1) + 1
