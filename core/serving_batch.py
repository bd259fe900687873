"""Dynamic batching of `hub serving` requests: compatible requests share one pipeline call.

`paddiff serve --ray` (paddiff.serve_ray) collects the requests that arrive together at one
replica and hands them here as a list. Each request is first checked on its own, exactly as the
PaddleHub module's `serve` checks it (paddiff.serving.parse_request against the operator's
limits, the prompt filters, then the pipeline's own setting checks), so a bad request gets its
own error and never fails its neighbours. The valid ones are grouped by `batch_key`: requests
that agree on everything applied to the whole call (size, steps, scheduler, guidance, eta,
LoRAs, embeddings; requests with control nets run alone) become one `text_to_image` call with one prompt, negative prompt and seed per
image, and the images are handed back to the requests they belong to.

Each image has its own seeded noise, and by default the denoiser runs one image per call
(`Pipeline.denoiser_batch_size`), so a batched image is bit-identical to the same request sent
alone. What batching saves is the per-call work around the denoiser (text encoding, scheduler
set-up, Python overhead); `denoiser_batch_size=None` also runs the denoiser on the whole batch
(faster on some hardware, last-bit differences).

Replies have the shape `hub serving` gives: {"status": "000", "msg": "", "results": {...}}, or
status "101" with the message the module would give. Nothing here imports Ray.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from paddiff import serving

OK, FAILED = "000", "101"


@dataclass
class Prepared:
    """A request that passed every check: pipeline method, arguments and the resolved seeds."""

    method: str
    positional: list
    settings: dict  # pipeline keyword arguments (num_images_per_prompt, seed as a list, ...)
    loras: tuple = ()
    embeddings: tuple = ()
    prompt_verdicts: list = field(default_factory=list)
    key: tuple | None = None  # None: runs alone (image-to-image, inpainting, control nets)
    controls: list = field(default_factory=list)  # paddiff.control.requests units
    guess_mode: bool = False


def reply_ok(results: dict) -> dict:
    return {"status": OK, "msg": "", "results": results}


def reply_error(message: str) -> dict:
    return {"status": FAILED, "msg": message, "results": ""}


def error_message(exc: Exception) -> str | None:
    """The `msg` the PaddleHub module answers with for a user's mistake; None for anything else
    (a server fault, which the caller reports as it is)."""
    import paddiff
    from paddiff.lora import LoraFormatError, LoraMismatchError

    if isinstance(exc, (serving.RequestError, paddiff.ValidationError)):
        return f"invalid request: {exc}"
    if isinstance(exc, (LoraFormatError, LoraMismatchError)):  # a file of the operator's folder
        return f"LoRA refused: {exc}"
    if isinstance(exc, paddiff.SafetyBlocked):  # names the category only, never the term
        return str(exc)
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return str(exc)
    return None


def batch_key(method: str, settings: dict, loras, embeddings) -> tuple | None:
    """What a pipeline call applies to all its images; requests with equal keys can share it.
    Prompts, negative prompts and seeds are per image, so they are not part of it."""
    if method != "text_to_image":
        return None
    return (
        settings["width"],
        settings["height"],
        settings.get("steps", 20),
        settings.get("scheduler"),
        settings.get("guidance_scale", 7.5),
        settings.get("eta", 0.0),
        tuple(loras),
        tuple(embeddings),
    )


# The leading parameters of the three generation methods, in order (as the hub module's).
_POSITIONAL = {
    "text_to_image": ("prompt",),
    "image_to_image": ("prompt", "image"),
    "inpaint": ("prompt", "image", "mask_image"),
}
_MODES = {"text_to_image": "txt2img", "image_to_image": "img2img", "inpaint": "inpaint"}


class BatchingServer:
    """One pipeline serving lists of requests; `max_images` caps the images of one call."""

    def __init__(self, pipeline, limits: serving.ServingLimits, max_images: int = 8):
        if max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        self.pipeline = pipeline
        self.limits = limits
        self.max_images = max_images
        self.controlnets: dict = {}  # loaded control nets by path: the operator's few

    # -- one request ----------------------------------------------------------------------------

    def prepare(self, fields) -> Prepared | dict:
        """A `Prepared` request, or the error reply `hub serving` would give for it."""
        try:
            return self._prepare(fields)
        except Exception as exc:
            message = error_message(exc)
            if message is None:
                raise
            return reply_error(message)

    def _prepare(self, fields) -> Prepared:
        from paddiff.request import build_request

        if not isinstance(fields, dict):
            raise serving.RequestError("the request must be a JSON object")
        pipeline = self.pipeline
        prompt, negative = fields.get("prompt"), fields.get("negative_prompt")
        if isinstance(prompt, str):  # refused before anything is decoded
            pipeline.safety.check_prompt(prompt, negative if isinstance(negative, str) else None)
        parsed = serving.parse_request(fields, self.limits, pipeline.native_size())
        arguments = dict(parsed.arguments)
        loras = tuple((str(path), weight) for path, weight in arguments.pop("loras", ()))
        embeddings = tuple(str(path) for path in arguments.pop("embeddings", ()))
        controls, guess_mode = arguments.pop("controls", []), arguments.pop("guess_mode", False)
        arguments["num_images_per_prompt"] = arguments.pop("num_images", 1)
        positional = [arguments.pop(name) for name in _POSITIONAL[parsed.method]]
        named = dict(zip(("image", "mask_image"), positional[1:], strict=False))
        # The pipeline's own checks (its size and image limits, scheduler names, seeds), which
        # also fix random seeds now, so that a batched call uses exactly this request's seeds.
        negative_prompt = arguments.pop("negative_prompt", None)
        request = build_request(
            pipeline, _MODES[parsed.method], positional[0], negative_prompt, arguments, **named
        )
        verdicts = pipeline.safety.check_prompt(request.prompts[0], negative_prompt)
        settings = dict(
            arguments,
            negative_prompt=negative_prompt,
            seed=list(request.seeds),
            width=request.width,
            height=request.height,
        )
        if controls and parsed.method == "text_to_image":
            # a size the request did not give is the control image's, as in hub serving's call
            for name in ("width", "height"):
                if name not in arguments:
                    settings.pop(name)
        return Prepared(
            method=parsed.method,
            positional=positional,
            settings=settings,
            loras=loras,
            embeddings=embeddings,
            prompt_verdicts=verdicts,
            # each request's own control images: a controlled request runs alone
            key=None if controls else batch_key(parsed.method, settings, loras, embeddings),
            controls=controls,
            guess_mode=guess_mode,
        )

    # -- many requests --------------------------------------------------------------------------

    def run(self, items: list) -> list[dict]:
        """One reply per item (a `Prepared`, or an error reply passed through), in order."""
        replies: list[dict | None] = [item if isinstance(item, dict) else None for item in items]
        for group in self.groups(items):
            for index, reply in zip(group, self._run_group([items[k] for k in group]), strict=True):
                replies[index] = reply
        return replies

    def groups(self, items: list) -> list[list[int]]:
        """Indices of prepared items that share one pipeline call, in arrival order, each group
        holding at most `max_images` images (a request larger than that runs alone)."""
        groups: list[list[int]] = []
        open_groups: dict[tuple, tuple[list[int], int]] = {}  # key -> (group, images in it)
        for index, item in enumerate(items):
            if isinstance(item, dict):
                continue
            images = item.settings["num_images_per_prompt"]
            if item.key is None:
                groups.append([index])
                continue
            group, count = open_groups.get(item.key, (None, 0))
            if group is None or count + images > self.max_images:
                group, count = [], 0
                groups.append(group)
            group.append(index)
            open_groups[item.key] = (group, count + images)
        return groups

    def _run_group(self, group: list[Prepared]) -> list[dict]:
        started = time.perf_counter()
        try:
            outputs = self._generate(group)
        except Exception as exc:
            if len(group) > 1:  # find whose request it was: each one alone
                return [self._run_group([item])[0] for item in group]
            message = error_message(exc)
            if message is None:
                message = f"{type(exc).__name__}: {exc}"
            return [reply_error(message)]
        seconds = round(time.perf_counter() - started, 3)
        total = sum(len(images) for images in outputs)
        return [
            reply_ok(
                {
                    "images": images,
                    "prompt_verdicts": [serving.verdict_json(v) for v in item.prompt_verdicts],
                    "prompt_warnings": self._prompt_warnings(item.positional[0]),
                    "seconds": seconds,
                    # how the request was served: it shared one call with `requests` requests
                    "batch": {"requests": len(group), "images": total},
                }
            )
            for item, images in zip(group, outputs, strict=True)
        ]

    def _prompt_warnings(self, prompt: str) -> list[str]:
        """What `hub serving` returns as `prompt_warnings` for this request's prompt alone (the
        model package's checks, e.g. words the embedded model never learnt)."""
        from paddiff.prompt_checks import checks_for

        path = getattr(self.pipeline, "model_path", None)
        if path is None:
            return []
        return [message for check in checks_for(Path(path).resolve()) if (message := check(prompt))]

    def _generate(self, group: list[Prepared]) -> list[list[dict]]:
        """Images (as reply entries) per request of a group, from one pipeline call."""
        from paddiff.control.requests import control_arguments
        from paddiff.webui import use_adapters

        first = group[0]
        use_adapters(
            self.pipeline,
            [(Path(path), weight) for path, weight in first.loras],
            [Path(path) for path in first.embeddings],
        )
        # exactly this request's control nets (none for a group: controlled requests run alone)
        control = control_arguments(
            self.pipeline, first.controls, first.guess_mode, self.controlnets
        )
        if len(group) == 1:
            result = getattr(self.pipeline, first.method)(
                *first.positional, progress=False, **first.settings, **control
            )
        else:  # one prompt, negative prompt and seed per image
            prompts, negatives, seeds = [], [], []
            for item in group:
                count = item.settings["num_images_per_prompt"]
                prompts += [item.positional[0]] * count
                negatives += [item.settings["negative_prompt"]] * count
                seeds += item.settings["seed"]
            # A list of negative prompts holds strings only; "" and None both mean none (the
            # unconditional embedding), and each image's settings say what its request sent.
            negative = negatives[0] if len(set(negatives)) == 1 else [n or "" for n in negatives]
            settings = dict(
                first.settings, negative_prompt=negative, seed=seeds, num_images_per_prompt=1
            )
            result = self.pipeline.text_to_image(prompts, progress=False, **settings)
            for image_settings, sent in zip(result.settings, negatives, strict=True):
                image_settings["negative_prompt"] = sent
        verdicts = result.verdicts or [None] * len(result.images)
        entries = [
            {
                "image": serving.encode_png(image),
                "seed": settings["seed"],
                "settings": serving.jsonable(settings),
                "safety": serving.verdict_json(verdict),
            }
            for image, settings, verdict in zip(
                result.images, result.settings, verdicts, strict=True
            )
        ]
        per_request, start = [], 0
        for item in group:
            count = item.settings["num_images_per_prompt"]
            per_request.append(entries[start : start + count])
            start += count
        return per_request
