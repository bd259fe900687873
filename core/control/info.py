"""How a generation's control settings are recorded, in the words of A1111's ControlNet
extension (`ControlNet 0: "Module: canny, Model: name [hash], Weight: 1.0, ..."`), so tools
that read WebUI PNG parameters show them."""

from __future__ import annotations


def unit_text(unit) -> str:
    net = unit.net
    name = getattr(net, "name", "") or type(net).__name__
    short_hash = getattr(net, "short_hash", "")
    model = f"{name} [{short_hash}]" if short_hash else name
    fields = [
        ("Module", getattr(unit, "preprocessor", None) or "none"),
        ("Model", model),
        ("Weight", f"{unit.scale:g}"),
        ("Resize Mode", "Just Resize"),
        ("Guidance Start", f"{unit.start:g}"),
        ("Guidance End", f"{unit.end:g}"),
    ]
    return ", ".join(f"{label}: {value}" for label, value in fields)


def control_settings(guidance) -> dict:
    """Settings entries `controlnet_<i>` (one per unit) and `control_mode`."""
    out = {f"controlnet_{i}": unit_text(unit) for i, unit in enumerate(guidance.units)}
    out["control_mode"] = "ControlNet is more important" if guidance.guess_mode else "Balanced"
    return out
