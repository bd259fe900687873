"""The control arguments of a generation call (diffusers' names), checked and made into
`ControlUnit`s."""

from __future__ import annotations

from paddiff.control.guidance import ControlUnit
from paddiff.control.images import prepare_control_image
from paddiff.control.preprocess import preprocess
from paddiff.validation import ValidationError

CONTROL_SETTINGS = {
    "control_image": None,
    "controlnet_conditioning_scale": 1.0,
    "control_guidance_start": 0.0,
    "control_guidance_end": 1.0,
    "guess_mode": False,
    "control_preprocessor": None,  # paddiff's own: make each control image with this first
}


def pop_control_settings(settings: dict) -> dict:
    """Take the control arguments out of a mode method's keyword arguments."""
    return {key: settings.pop(key, default) for key, default in CONTROL_SETTINGS.items()}


def control_size(control: dict) -> tuple[int, int] | None:
    """(width, height) of the first control image, for a text-to-image call without a size
    (diffusers takes the output size from the control image then)."""
    images = _as_list(control["control_image"])
    if not images or images[0] is None:
        return None
    from paddiff.images import load_image

    return load_image(images[0], "control image").size


def control_units(controlnets: list, control: dict, width: int, height: int) -> list[ControlUnit]:
    """One unit per loaded control net; every list argument has one entry per control net (a
    single value applies to all). Raises ValidationError naming what does not fit."""
    images = _as_list(control["control_image"])
    if not controlnets:
        if images:
            raise ValidationError(
                "control_image given but no control net is loaded (load_pipeline(..., "
                "controlnet=PATH) or pipe.load_controlnet(PATH))"
            )
        return []
    n = len(controlnets)
    if not images:
        raise ValidationError(f"{n} control net(s) loaded: give control_image (one per net)")
    if len(images) != n:
        raise ValidationError(f"{len(images)} control image(s) for {n} control net(s)")
    scales = _per_net(control["controlnet_conditioning_scale"], n, "controlnet_conditioning_scale")
    starts = _per_net(control["control_guidance_start"], n, "control_guidance_start")
    ends = _per_net(control["control_guidance_end"], n, "control_guidance_end")
    makers = _as_list(control["control_preprocessor"]) or [None]
    makers = makers * n if len(makers) == 1 else makers
    if len(makers) != n:
        raise ValidationError(f"control_preprocessor has {len(makers)} values for {n} nets")
    for start, end in zip(starts, ends, strict=True):
        if not 0.0 <= start < end <= 1.0:
            raise ValidationError(
                "control guidance window must satisfy 0 <= control_guidance_start < "
                f"control_guidance_end <= 1, got {start} and {end}"
            )
    units = []
    for net, image, scale, start, end, maker in zip(
        controlnets, images, scales, starts, ends, makers, strict=True
    ):
        if maker not in (None, "none"):
            image = preprocess(maker, image)
        unit = ControlUnit(net, prepare_control_image(image, width, height), scale, start, end)
        unit.preprocessor = maker or "none"
        units.append(unit)
    return units


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _per_net(value, n: int, name: str) -> list[float]:
    values = _as_list(value)
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ValidationError(f"{name} has {len(values)} values for {n} control net(s)")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be numbers, got {value!r}") from None
