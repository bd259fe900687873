"""Generation settings in PNG files, in the `parameters` text chunk that WebUI-style tools read.

The layout is the one AUTOMATIC1111's WebUI writes and other tools (image browsers, ComfyUI's
loaders, Civitai) parse:

    a prompt, possibly on several lines
    Negative prompt: a negative prompt
    Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 1, Size: 64x64, Model hash: 0123456789, ...

The last line is "Key: value" pairs separated by ", "; a value that itself holds a comma, colon or
newline is written as a JSON string, as WebUI does.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

#: settings key -> label on the last line, in the order WebUI writes them.
_LABELS = {
    "steps": "Steps",
    "sampler": "Sampler",
    "schedule_type": "Schedule type",
    "guidance_scale": "CFG scale",
    "seed": "Seed",
    "size": "Size",
    "model_hash": "Model hash",
    "model": "Model",
    "strength": "Denoising strength",
    "eta": "Eta",
    "lora_hashes": "Lora hashes",
    "ti_hashes": "TI hashes",
    "mode": "Mode",
    "version": "Version",
}


def format_parameters(settings: dict) -> str:
    """The `parameters` text for one image's settings (as in `GenerationResult.settings`)."""
    fields = dict(settings)
    if "width" in fields and "height" in fields:
        fields["size"] = f"{fields['width']}x{fields['height']}"
    pairs = []
    for key, label in _LABELS.items():
        value = fields.get(key)
        if value is None or (key == "eta" and not value):
            continue
        pairs.append(f"{label}: {_quote(_format_value(value))}")
    # control nets, as A1111's ControlNet extension writes them ("ControlNet 0: ...")
    units = sorted((k for k in fields if k.startswith("controlnet_")), key=lambda k: int(k[11:]))
    pairs.extend(f"ControlNet {key[11:]}: {_quote(str(fields[key]))}" for key in units)
    if fields.get("control_mode"):
        pairs.append(f"Control Mode: {_quote(str(fields['control_mode']))}")
    lines = [fields.get("prompt") or ""]
    if fields.get("negative_prompt"):
        lines.append(f"Negative prompt: {fields['negative_prompt']}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


_PAIR = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict:
    """Read a `parameters` text back into {"prompt", "negative_prompt", label: value...}.

    Values stay strings (labels as written, e.g. "CFG scale"), like the readers other tools use.
    """
    *head, last = text.rstrip("\n").split("\n")
    if not _PAIR.match(last) or "Steps:" not in last:  # no settings line: all of it is prompt
        head, last = head + [last], ""
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in head:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    parsed = {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines)}
    for label, value in _PAIR.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        parsed[label.strip()] = value
    return parsed


def save_image(image, settings: dict, path: str | Path) -> Path:
    """Write `image` (a PIL image) as a PNG whose `parameters` chunk holds `settings`.

    Pillow writes the chunk as tEXt, or as iTXt when the text is not Latin-1 (Chinese prompts),
    and `PIL.Image.open(path).text["parameters"]` reads either.
    """
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    info = PngInfo()
    info.add_text("parameters", format_parameters(settings))
    # Written next to the target, then renamed: an interrupted or failed write (Ctrl-C, a full
    # disk) leaves no half PNG behind under the real name.
    partial = path.with_name(f".{path.name}.partial")
    try:
        image.save(partial, format="PNG", pnginfo=info)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_parameters(path: str | Path) -> dict:
    """The parsed `parameters` chunk of a PNG file written by `save_image` (or by WebUI)."""
    from PIL import Image

    with Image.open(path) as image:
        text = image.text.get("parameters")
    if text is None:
        raise ValueError(f"{path} has no 'parameters' text chunk")
    return parse_parameters(text)


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}" if value == value else "nan"
    return str(value)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:\n"') else text


def sampler_label(class_name: str, config: dict) -> str:
    """WebUI's name for a scheduler and its config ("DPM++ 2M Karras"), or the class name; the
    names come from the one table of scheduler names, `paddiff.scheduler_names.ALIASES`."""
    from paddiff.scheduler_names import webui_name

    return webui_name(class_name, config) or class_name
