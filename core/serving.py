"""Request limits, validation and image coding for serving paddiff over HTTP.

The PaddleHub module (hub_module/paddiff/module.py) is a thin adapter; everything it needs to turn
an untrusted JSON request into pipeline arguments lives here, so it can be tested without PaddleHub
or Paddle. Limits are set by the server operator through environment variables, never by a request.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from paddiff import images
from PIL import Image, UnidentifiedImageError


class RequestError(ValueError):
    """A request that cannot be served as sent; the message says which field and why."""


@dataclass(frozen=True)
class ServingLimits:
    """What one request may ask for. Defaults suit a 2-core CPU server and a small model."""

    max_pixels: int = 512 * 512  # width * height of each generated (and uploaded) image
    max_steps: int = 50
    max_images: int = 4  # images per request
    max_prompt_chars: int = 1000  # prompt and negative prompt, each
    # None leaves the choice to the pipeline (any registered name or alias); else only these.
    allowed_schedulers: tuple[str, ...] | None = None
    max_body_bytes: int = 16 * 1024 * 1024  # the whole JSON body, base64 images included
    # Folders whose files a request may name as LoRAs / embeddings (never a path); none: refused.
    lora_dirs: tuple[str, ...] = ()
    embedding_dirs: tuple[str, ...] = ()
    max_loras: int = 4  # LoRAs per request
    controlnet_dirs: tuple[str, ...] = ()  # control nets a request may name (docs/controlnet.md)
    max_controlnets: int = 2  # control nets per request

    # environment variable -> field, for `from_env`
    ENV = {
        "PADDIFF_MAX_PIXELS": "max_pixels",
        "PADDIFF_MAX_STEPS": "max_steps",
        "PADDIFF_MAX_IMAGES": "max_images",
        "PADDIFF_MAX_PROMPT_CHARS": "max_prompt_chars",
        "PADDIFF_ALLOWED_SCHEDULERS": "allowed_schedulers",
        "PADDIFF_MAX_BODY_BYTES": "max_body_bytes",
        "PADDIFF_LORA_DIR": "lora_dirs",
        "PADDIFF_EMBEDDING_DIR": "embedding_dirs",
        "PADDIFF_MAX_LORAS": "max_loras",
        "PADDIFF_CONTROLNET_DIR": "controlnet_dirs",
        "PADDIFF_MAX_CONTROLNETS": "max_controlnets",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingLimits:
        """Read the limits from PADDIFF_* variables; unset or empty ones keep their default."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for variable, name in cls.ENV.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            if name == "allowed_schedulers":
                values[name] = tuple(part.strip() for part in text.split(",") if part.strip())
                continue
            if name in (
                "lora_dirs",
                "embedding_dirs",
                "controlnet_dirs",
            ):  # os.pathsep-separated folders
                values[name] = tuple(part for part in text.split(os.pathsep) if part)
                continue
            try:
                number = int(text)
            except ValueError:
                raise ValueError(f"{variable} must be a positive integer, got {text!r}") from None
            if number < 1:
                raise ValueError(f"{variable} must be a positive integer, got {text!r}")
            values[name] = number
        return cls(**values)


@dataclass
class GenerationRequest:
    """A validated request: which pipeline method to call and its keyword arguments."""

    method: str  # "text_to_image", "image_to_image" or "inpaint"
    arguments: dict = field(default_factory=dict)


# JSON field -> pipeline keyword, for fields that pass through after validation.
_NUMBER_FIELDS = ("guidance_scale", "eta", "strength")
_FIELDS = (
    "prompt",
    "negative_prompt",
    "steps",
    "guidance_scale",
    "width",
    "height",
    "num_images",
    "seed",
    "eta",
    "scheduler",
    "strength",
    "image",
    "mask_image",
    "loras",
    "embeddings",
    "controlnets",
    "guess_mode",
)
_MAX_SEED = 2**63 - 1


def parse_request(
    fields: Mapping, limits: ServingLimits, default_size: tuple[int, int] | None = None
) -> GenerationRequest:
    """Check an untrusted request against `limits` and turn it into pipeline arguments.

    `default_size` (width, height) is what the pipeline uses for a missing width or height in
    text-to-image, so that the pixel limit holds when only one of them is given. Raises
    RequestError naming the first offending field. Images arrive as base64 strings.
    """
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(_FIELDS)}")
    if "prompt" not in fields:
        raise RequestError("'prompt' is required")

    args: dict = {"prompt": _text(fields, "prompt", limits, required=True)}
    if fields.get("negative_prompt") is not None:
        args["negative_prompt"] = _text(fields, "negative_prompt", limits)
    if fields.get("steps") is not None:
        args["steps"] = _integer(fields, "steps", 1, limits.max_steps)
    if fields.get("num_images") is not None:
        args["num_images"] = _integer(fields, "num_images", 1, limits.max_images)
    if fields.get("seed") is not None:
        args["seed"] = _integer(fields, "seed", 0, _MAX_SEED)
    for name in ("width", "height"):
        if fields.get(name) is not None:
            args[name] = _integer(fields, name, 8, limits.max_pixels)
    width, height = args.get("width"), args.get("height")
    if default_size and fields.get("image") is None:
        width, height = width or default_size[0], height or default_size[1]
    if width and height and width * height > limits.max_pixels:
        raise RequestError(
            f"width*height is {width}x{height} = {width * height} pixels; "
            f"this server allows at most {limits.max_pixels}"
        )
    bounds = {"guidance_scale": (0.0, 100.0), "eta": (0.0, 1.0), "strength": (0.0, 1.0)}
    for name in _NUMBER_FIELDS:
        if fields.get(name) is not None:
            args[name] = _number(fields, name, *bounds[name])
    if fields.get("scheduler") is not None:
        args["scheduler"] = _scheduler(fields["scheduler"], limits)

    loras, embeddings = _adapters(fields, args, limits)
    if loras:
        args["loras"] = loras
    if embeddings:
        args["embeddings"] = embeddings

    if fields.get("controlnets"):
        from paddiff.control.requests import parse_controls

        args["controls"] = parse_controls(fields["controlnets"], limits, decode_image, RequestError)
        args["guess_mode"] = bool(fields.get("guess_mode", False))
    elif fields.get("guess_mode") is not None:
        raise RequestError("'guess_mode' applies only with 'controlnets'")

    method = "text_to_image"
    if fields.get("image") is not None:
        args["image"] = decode_image(fields["image"], "image", limits)
        method = "image_to_image"
    if fields.get("mask_image") is not None:
        if "image" not in args:
            raise RequestError("'mask_image' needs an 'image' to inpaint")
        args["mask_image"] = decode_image(fields["mask_image"], "mask_image", limits)
        method = "inpaint"
    if "strength" in args and method == "text_to_image":
        raise RequestError("'strength' applies only with an 'image'")
    return GenerationRequest(method, args)


def _adapters(fields, args, limits: ServingLimits) -> tuple[list, list]:
    """([(LoRA file, weight)], [embedding file]) a request names: "loras" (["name",
    "name:0.7", {"name": ..., "weight": ...}]), `<lora:name:0.7>` in the prompt (removed from
    it) and "embeddings" (names). Names are looked up in the operator's folders only; every
    refused name is listed in one error."""
    from paddiff.lora.names import AdapterNameError, extract_lora_tags, resolve_name, split_scale

    asked: list[tuple[str, float]] = []
    for item in _list(fields, "loras"):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise RequestError(f"'loras': weight of {item['name']!r} must be a number")
            asked.append((item["name"], float(weight)))
        elif isinstance(item, str):
            asked.append(split_scale(item))
        else:
            raise RequestError("'loras' entries are names, 'name:weight' or {name, weight}")
    try:
        args["prompt"], tags = extract_lora_tags(args["prompt"])
    except AdapterNameError as exc:
        raise RequestError(str(exc)) from None
    asked += tags
    if len(asked) > limits.max_loras:
        raise RequestError(f"{len(asked)} LoRAs asked for; this server allows {limits.max_loras}")
    for name, weight in asked:
        if not math.isfinite(weight) or abs(weight) > 10:
            raise RequestError(f"LoRA {name!r}: weight {weight} is outside [-10, 10]")
    refused, loras, embeddings = [], [], []
    lora_dirs = [Path(d) for d in limits.lora_dirs]
    for name, weight in asked:
        try:
            loras.append((resolve_name(name, lora_dirs, "LoRA"), weight))
        except AdapterNameError as exc:
            refused.append(str(exc))
    for name in _list(fields, "embeddings"):
        if not isinstance(name, str):
            raise RequestError("'embeddings' entries are names (strings)")
        try:
            embeddings.append(
                resolve_name(name, [Path(d) for d in limits.embedding_dirs], "embedding")
            )
        except AdapterNameError as exc:
            refused.append(str(exc))
    if refused:
        raise RequestError("; ".join(refused))
    return loras, embeddings


def _list(fields, name) -> list:
    value = fields.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list, got {type(value).__name__}")
    return value


def _text(fields, name, limits, required=False) -> str:
    value = fields[name]
    if not isinstance(value, str):
        raise RequestError(f"'{name}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RequestError(f"'{name}' must not be empty")
    if len(value) > limits.max_prompt_chars:
        raise RequestError(
            f"'{name}' has {len(value)} characters; this server allows at most "
            f"{limits.max_prompt_chars}"
        )
    return value


def _integer(fields, name, low, high) -> int:
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{name}' must be an integer, got {value!r}")
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def _number(fields, name, low, high) -> float:
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"'{name}' must be a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"'{name}' must be between {low} and {high}, got {value}")
    return float(value)


def _scheduler(value, limits) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(f"'scheduler' must be a scheduler name, got {value!r}")
    # With no list set, the pipeline itself checks the name (registered names and aliases).
    allowed = limits.allowed_schedulers
    if allowed is not None and value not in allowed and not _same_scheduler(value, allowed):
        raise RequestError(
            f"scheduler {value!r} is not allowed; this server allows: {', '.join(allowed)}"
        )
    return value


def _same_scheduler(value: str, allowed: tuple[str, ...]) -> bool:
    """Whether `value` selects what an allowed name selects: compared after the library's one name
    resolver, so "DPM++ 2M Karras" passes where "dpm++2m-karras" is allowed."""
    from paddiff.registry import UnknownPluginError
    from paddiff.scheduler_names import resolve_scheduler_name

    def resolved(name: str):
        try:
            return resolve_scheduler_name(name)
        except UnknownPluginError:
            return None

    wanted = resolved(value)
    return wanted is not None and any(resolved(name) == wanted for name in allowed)


def decode_image(data, name: str, limits: ServingLimits) -> Image.Image:
    """A base64 string (optionally a `data:image/...;base64,` URL) -> RGB PIL image."""
    if not isinstance(data, str):
        raise RequestError(f"'{name}' must be a base64 string, got {type(data).__name__}")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"'{name}' is not valid base64") from None
    return _open_image(io.BytesIO(raw), name, limits.max_pixels)


def _open_image(source, name: str, max_pixels: int | None) -> Image.Image:
    try:
        image = Image.open(source)
    except (UnidentifiedImageError, OSError):
        raise RequestError(
            f"'{name}' is not an image PIL can read (PNG, JPEG, WebP, ...)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise RequestError(f"'{name}' is too large: {exc}") from None
    # Check the header's size before decoding, so a small file cannot unpack into a huge image.
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise RequestError(
            f"'{name}' is {image.width}x{image.height}; this server allows at most "
            f"{max_pixels} pixels"
        )
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(f"'{name}' could not be decoded: {exc}") from None
    return images.load_image(image, name)  # the library's one rule for modes (16-bit, alpha...)


def load_image(image, name: str = "image") -> Image.Image:
    """What the Python API accepts as an image -> RGB PIL image.

    A PIL image, a NumPy array or a file path, by `paddiff.images.load_image`'s rules (uint8, or
    floats in [0, 1], ...); or base64 text / bytes (as sent over HTTP).
    """
    if isinstance(image, (Image.Image, np.ndarray, Path)) or (
        isinstance(image, str) and os.path.isfile(image)
    ):
        return images.load_image(image, name)
    if isinstance(image, str) and "." in image and not image.startswith("data:"):
        # no base64 text holds a "."; this was meant as a file name
        raise FileNotFoundError(f"{name} file not found: {image}")
    if isinstance(image, bytes):
        image = image.decode("ascii", errors="replace")
    if isinstance(image, str):
        return decode_image(image, name, ServingLimits(max_pixels=2**31))
    raise TypeError(
        f"'{name}' must be a PIL image, a NumPy array, a file path or base64 text, "
        f"got {type(image).__name__}"
    )


def encode_png(image: Image.Image) -> str:
    """PIL image -> base64 PNG text, as returned over HTTP."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def jsonable(value):
    """Settings as plain JSON types (NumPy scalars and tuples appear in pipeline settings)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def verdict_json(verdict) -> dict | None:
    """A safety `Verdict` for a response: without `matched` and `details`, which are for the
    operator's logs and could show a requester how to get around a filter."""
    if verdict is None:
        return None
    return jsonable(
        {
            "allowed": verdict.allowed,
            "category": verdict.category,
            "reason": verdict.reason,
            "filter": verdict.filter,
        }
    )
