"""The resume file: everything a stopped run needs to continue bit for bit.

It holds the LoRA factors, the new tokens' rows (pivotal tuning), the optimizer's moments and
step counters, the learning-rate schedule's position, the step reached and the run's
configuration. Nothing random needs saving:
every draw of step k (batch order, noise, timesteps) comes from `np.random.default_rng` seeded
with (seed, stream, k). The optimizer state is stored under names that do not depend on the
order Paddle created its parameters in ("unet/<layer>/down_moment1_0", not "linear_52.w_0_...").
A file from a run with another configuration is refused, naming the settings that differ.
"""

from __future__ import annotations

import os
from pathlib import Path

FORMAT = "paddiff-lora-training-state-1"


class ResumeError(ValueError):
    """The resume file is unreadable or belongs to a run with another configuration."""


def _names(lora, tokens=None) -> dict[str, str]:
    """Paddle parameter name -> stable name."""
    names = {
        layer.weight.name: f"{component}/{name}/{part}"
        for component, named in lora.factors.items()
        for name, pair in named.items()
        for part, layer in zip(("down", "up"), pair, strict=True)
    }
    if tokens is not None:
        names[tokens.rows.name] = "tokens/rows"
    return names


def _rename(key: str, table: dict[str, str]) -> str:
    for cut in (i for i, c in enumerate(key) if c == "_"):
        if key[:cut] in table:
            return table[key[:cut]] + key[cut:]
    return key


def save(path, lora, optimizer, step: int, configuration: dict, tokens=None) -> None:
    import paddle

    path = Path(path)
    names = _names(lora, tokens)
    state = {
        "format": FORMAT,
        "step": step,
        "configuration": configuration,
        "factors": lora.state(),
        "optimizer": {_rename(k, names): v for k, v in optimizer.state_dict().items()},
    }
    if tokens is not None:
        state["tokens"] = tokens.state()
    partial = path.with_name(path.name + ".partial")
    paddle.save(state, str(partial))
    os.replace(partial, path)  # a resume file appears whole or not at all


def load(path, lora, optimizer, configuration: dict, tokens=None) -> int:
    """Restore factors and optimizer from `path`; returns the step it was saved at."""
    import paddle

    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"resume file not found: {path}")
    try:
        state = paddle.load(str(path))
    except Exception as exc:  # Paddle raises assorted errors for a damaged pickle
        raise ResumeError(f"{path}: not a readable training state ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ResumeError(f"{path}: not a paddiff LoRA training state")
    saved = state["configuration"]
    differ = sorted(
        k for k in set(saved) | set(configuration) if saved.get(k) != configuration.get(k)
    )
    if differ:
        details = "; ".join(
            f"{k}: saved {saved.get(k)!r}, now {configuration.get(k)!r}" for k in differ[:6]
        )
        raise ResumeError(
            f"{path} comes from a run with another configuration ({details}); resume with the "
            "same settings, or start a new run without --resume"
        )
    lora.set_state(state["factors"])
    if tokens is not None:  # (the configuration names the tokens, so the file has them)
        tokens.set_state(state["tokens"])
    back = {stable: name for name, stable in _names(lora, tokens).items()}
    optimizer.set_state_dict({_rename(k, back): v for k, v in state["optimizer"].items()})
    return int(state["step"])
