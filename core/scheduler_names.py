"""Scheduler names as users type them, mapped onto registered schedulers plus options.

A name can be a registry name (`EulerDiscreteScheduler`, `example-euler`,
`distribution:name`), a diffusers class name in any case, a short name (`ddim`, `euler`, `unipc`,
`lcm`), or a WebUI sampler name (`DPM++ 2M Karras`, `dpm++2m-karras`, `Euler a`, `euler-a`).
Case, spaces, underscores and hyphens do not matter. The WebUI mapping follows diffusers'
documented table of A1111 / k-diffusion names ("Schedulers" overview); "Karras" means
`use_karras_sigmas=True`.

It is also the one place that maps back: `webui_name` gives the WebUI spelling of a scheduler and
its config, which image metadata's "Sampler" field uses (paddiff.png_info).

This module is data plus a few functions; it imports no plugin (listing stays fast).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

KARRAS = {"use_karras_sigmas": True}
NOT_KARRAS = {"use_karras_sigmas": False}
DPM_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
DPM_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
DPM_3M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}

#: (names, registry name, options). The first name is the canonical short alias shown in
#: `paddiff plugins list`; the others are spellings users bring from WebUIs and papers. The one
#: with capitals, where WebUI has the sampler, is WebUI's own spelling (see `webui_name`).
ALIASES: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("ddpm", "DDPM"), "DDPMScheduler", {}),
    (("ddim", "DDIM"), "DDIMScheduler", {}),
    (("pndm",), "PNDMScheduler", {}),
    (("plms", "PLMS"), "PNDMScheduler", {"skip_prk_steps": True}),
    (("lms", "LMS"), "LMSDiscreteScheduler", NOT_KARRAS),
    (("lms-karras", "LMS Karras"), "LMSDiscreteScheduler", KARRAS),
    (("euler", "Euler"), "EulerDiscreteScheduler", NOT_KARRAS),
    (("euler-karras", "Euler Karras"), "EulerDiscreteScheduler", KARRAS),
    (("euler-a", "euler-ancestral", "Euler a"), "EulerAncestralDiscreteScheduler", {}),
    (("heun", "Heun"), "HeunDiscreteScheduler", NOT_KARRAS),
    (("heun-karras", "Heun Karras"), "HeunDiscreteScheduler", KARRAS),
    (("dpm2", "DPM2"), "KDPM2DiscreteScheduler", NOT_KARRAS),
    (("dpm2-karras", "DPM2 Karras"), "KDPM2DiscreteScheduler", KARRAS),
    (("dpm2-a", "DPM2 a", "dpm2-ancestral"), "KDPM2AncestralDiscreteScheduler", NOT_KARRAS),
    (("dpm2-a-karras", "DPM2 a Karras"), "KDPM2AncestralDiscreteScheduler", KARRAS),
    (
        ("dpm++2m", "DPM++ 2M", "dpmsolver++", "dpm-solver++"),
        "DPMSolverMultistepScheduler",
        {**DPM_2M, **NOT_KARRAS},
    ),
    (("dpm++2m-karras", "DPM++ 2M Karras"), "DPMSolverMultistepScheduler", {**DPM_2M, **KARRAS}),
    (("dpm++2m-sde", "DPM++ 2M SDE"), "DPMSolverMultistepScheduler", {**DPM_2M_SDE, **NOT_KARRAS}),
    (
        ("dpm++2m-sde-karras", "DPM++ 2M SDE Karras"),
        "DPMSolverMultistepScheduler",
        {**DPM_2M_SDE, **KARRAS},
    ),
    (("dpm++3m-sde", "DPM++ 3M SDE"), "DPMSolverMultistepScheduler", {**DPM_3M_SDE, **NOT_KARRAS}),
    (
        ("dpm++3m-sde-karras", "DPM++ 3M SDE Karras"),
        "DPMSolverMultistepScheduler",
        {**DPM_3M_SDE, **KARRAS},
    ),
    # diffusers' table maps "DPM++ SDE" to its singlestep DPM-Solver++ (not to
    # DPMSolverSDEScheduler, which needs torchsde's Brownian tree)
    (("dpm++sde", "DPM++ SDE", "dpm-singlestep"), "DPMSolverSinglestepScheduler", NOT_KARRAS),
    (("dpm++sde-karras", "DPM++ SDE Karras"), "DPMSolverSinglestepScheduler", KARRAS),
    (("unipc", "uni-pc", "UniPC"), "UniPCMultistepScheduler", NOT_KARRAS),
    (("unipc-karras", "UniPC Karras"), "UniPCMultistepScheduler", KARRAS),
    (("deis", "DEIS"), "DEISMultistepScheduler", NOT_KARRAS),
    (("deis-karras", "DEIS Karras"), "DEISMultistepScheduler", KARRAS),
    (("lcm", "LCM"), "LCMScheduler", {}),
]


def normalize(name: str) -> str:
    """Lower case without spaces, underscores or hyphens: "DPM++ 2M Karras" -> "dpm++2mkarras"."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


_BY_KEY = {
    normalize(alias): (target, options) for names, target, options in ALIASES for alias in names
}


def aliases_for(registry_name: str) -> list[str]:
    """The canonical short aliases that select `registry_name` (for listings)."""
    return [names[0] for names, target, _ in ALIASES if target == registry_name]


def webui_name(registry_name: str, config: dict) -> str | None:
    """WebUI's spelling for a scheduler and its config ("DPM++ 2M Karras"), or None if it has none:
    of the entries for `registry_name` whose options the config has, the most specific one's."""
    matches = [
        (len(options), names)
        for names, target, options in ALIASES
        if target == registry_name and all(config.get(k) == v for k, v in options.items())
    ]
    for _, names in sorted(matches, key=lambda match: -match[0]):
        webui = [name for name in names if name != name.lower()]
        if webui:
            return webui[0]
    return None


def resolve_scheduler_name(
    name: str, registered: list[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """(registry name, config options) for a name a user typed.

    `registered` is the list of registry names to accept besides the built-in aliases
    (default: every scheduler installed). Raises `UnknownPluginError` listing the known names.
    """
    from paddiff.registry import UnknownPluginError, default_registry

    if registered is None:
        registered = default_registry().names("schedulers")
    if name in registered or ":" in name:  # exact registry names, distribution:name
        return name, {}
    key = normalize(name)
    if key in _BY_KEY:
        target, options = _BY_KEY[key]
        return target, dict(options)
    for candidate in registered:  # diffusers class names and plugin names, any case
        if normalize(candidate) == key:
            return candidate, {}
    known = sorted({names[0] for names, _, _ in ALIASES} | set(registered), key=str.lower)
    message = f"no scheduler named {name!r}."
    close = difflib.get_close_matches(key, [normalize(k) for k in known], n=1, cutoff=0.6)
    if close:
        message += f" Did you mean {next(k for k in known if normalize(k) == close[0])!r}?"
    raise UnknownPluginError(message + " Known names: " + ", ".join(known) + ".")


def create_scheduler(name: str, base_config: dict | None = None, registry=None):
    """A scheduler chosen by any accepted name, built from `base_config` (typically the model
    folder's scheduler_config.json) updated with the options the name implies."""
    from paddiff.registry import default_registry

    registry = registry or default_registry()
    target, options = resolve_scheduler_name(name, registry.names("schedulers"))
    cls = registry.get("schedulers", target)
    return cls.from_config({**(base_config or {}), **options})
