"""The PaddleHub module `paddiff`: a thin adapter over the `paddiff` library.

    hub.Module(name="paddiff").text_to_image("一只猫", steps=20, seed=1)
    hub run paddiff --prompt "一只猫" --output_dir out --steps 20 --seed 1
    hub serving start -m paddiff -p 8866      (POST /predict/paddiff, see docs/serving.md)

The model is the library's embedded default unless `model=` (or PADDIFF_MODEL) names a model folder.
Request limits for serving come from PADDIFF_MAX_* variables (paddiff.serving.ServingLimits).
"""

import argparse
import contextlib
import os
import sys
import threading
import time

import paddle
from paddlehub.module.module import moduleinfo, runnable, serving

import paddiff
from paddiff import serving as api
from paddiff.lora import LoraFormatError, LoraMismatchError


@contextlib.contextmanager
def dynamic_graph():
    """Run paddiff in Paddle's dynamic graph mode even if the caller switched static mode on.

    paddiff's components are dygraph code and fail in static mode. The class below already opts
    out of PaddleHub's static-mode wrapper; this covers callers (or PaddleHub versions) that turn
    static mode on some other way. Paddle keeps the mode per thread (framework.GlobalThreadLocal),
    so switching here affects only the calling thread, and the caller's mode is restored.
    """
    was_static = not paddle.in_dynamic_mode()
    if was_static:
        paddle.disable_static()
    try:
        yield
    finally:
        if was_static:
            paddle.enable_static()


# A user's mistake: a wrong model path or setting, an unreadable image, a refused prompt.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, paddiff.SafetyBlocked)


@contextlib.contextmanager
def command_line_errors():
    """Under the `hub` command (`hub run`, `hub serving start`), end with one line on stderr and
    exit status 1 instead of a traceback; called from Python, raise as usual."""
    try:
        yield
    except USER_ERRORS as exc:
        # only the `hub` console script imports paddlehub.commands (`import paddlehub` does not)
        if "paddlehub.commands.utils" not in sys.modules:
            raise
        print(f"paddiff: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


@moduleinfo(
    name="paddiff",
    version="0.1.0",
    summary="Text-to-image, image-to-image and inpainting diffusion on PaddlePaddle.",
    author="paddiff",
    author_email="",
    type="image/text_to_image",
)
class Paddiff:
    # PaddleHub's RunModule.__getattribute__ returns every method of a module class that is not
    # a paddle.nn.Layer wrapped in `run_in_static_mode`, a leftover for static-graph modules; its
    # guard does not restore the mode when the method raises, so one bad request would leave the
    # caller's thread in static mode. paddiff is dygraph code: opt out, plain attribute access.
    __getattribute__ = object.__getattribute__

    def __init__(self, model=None, scheduler=None, safety_filters=None, **pipeline_options):
        """`model`: a model folder or checkpoint (default: PADDIFF_MODEL, else the embedded
        model); `scheduler`: a scheduler name; `safety_filters`: what load_pipeline accepts
        (default: paddiff.safety.load_filters of the JSON file PADDIFF_SAFETY_CONFIG, or of
        the shipped defaults, as the `paddiff` CLI does); the rest goes to load_pipeline.

        The model loads on first use (`pipeline`), after the request's prompts and settings
        have been checked, so that `hub run` refuses a listed term or a bad setting without
        spending a model load on it (docs/pipeline.md)."""
        from paddiff.pipeline import as_safety
        from paddiff.safety import load_filters

        self.model = model or os.environ.get("PADDIFF_MODEL") or None
        with command_line_errors():
            if self.model and not os.path.exists(self.model):
                raise FileNotFoundError(f"model not found: {self.model}")
            # From the configuration: the prompt filters now, the image checker with the model.
            self._configured = safety_filters is None
            self._safety_config = os.environ.get("PADDIFF_SAFETY_CONFIG") or None
            if self._configured:
                self._safety = load_filters(self._safety_config, checks=("prompts",))
            else:
                self._safety = as_safety(safety_filters)
        self._load_options = dict(pipeline_options, scheduler=scheduler)
        self._pipeline = None
        self.limits = api.ServingLimits.from_env()
        # One generation at a time per module object: the pipeline and Paddle's dygraph state are
        # not meant to be shared by threads. (`hub serving` itself answers one request at a time.)
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    @property
    def pipeline(self):
        """The paddiff Pipeline, loaded on first use."""
        with self._load_lock:  # one load, even when the first calls come from several threads
            if self._pipeline is None:
                self._pipeline = self._load()
        return self._pipeline

    def _load(self):
        from paddiff.safety import load_filters

        with command_line_errors(), dynamic_graph():
            safety = self._safety
            if self._configured:  # the image checker, from the model folder unless configured
                model_dir = self.model if self.model and os.path.isdir(self.model) else None
                images = load_filters(self._safety_config, model_dir=model_dir, checks=("images",))
                safety = safety.with_image_filters(images)
            return paddiff.load_pipeline(self.model, safety_filters=safety, **self._load_options)

    @property
    def serving_func_name(self):
        """The serving method's name. Only `hub serving start` asks for it, while it sets the
        module up: the model loads then, so a started server has it (and a broken model stops
        the start) instead of the first request paying for the load."""
        self.pipeline  # noqa: B018 (loads the model)
        return "serve"

    def _check_before_loading(self, prompt, settings, num_images, strength=None):
        """A refused prompt or a bad setting fails here, before the model loads; the pipeline
        checks everything again (with the model's own limits) before it runs."""
        from paddiff.safety import check_prompt
        from paddiff.validation import as_prompt_list, check_settings

        if settings.get("prompt_embeds") is not None:
            return  # embeddings instead of a prompt: the pipeline checks them
        prompts = as_prompt_list(prompt)
        check_prompt(prompts, settings.get("negative_prompt"), self._safety)
        check_settings(
            steps=settings.get("steps", 20),
            guidance_scale=settings.get("guidance_scale", 7.5),
            eta=settings.get("eta", 0.0),
            num_images=num_images * len(prompts),
            seed=settings.get("seed"),
            width=settings.get("width"),
            height=settings.get("height"),
            strength=strength,
            scheduler=settings.get("scheduler"),
            # a loaded pipeline's limits, which a caller may have raised
            **{
                name: getattr(self._pipeline, name)
                for name in ("max_pixels", "max_images")
                if self._pipeline is not None
            },
        )

    def text_to_image(self, prompt, negative_prompt=None, output_dir=None, **settings):
        """Generate images; returns one dict per image: image (PIL), seed, settings, path."""
        self._check_before_loading(
            prompt, dict(settings, negative_prompt=negative_prompt), settings.get("num_images", 1)
        )
        return self._generate("text_to_image", output_dir, prompt, negative_prompt, **settings)

    def image_to_image(self, prompt, image, strength=0.8, output_dir=None, **settings):
        """`image`: PIL image, NumPy array, file path or base64 text."""
        image = api.load_image(image, "image")
        self._check_before_loading(prompt, settings, settings.get("num_images", 1), strength)
        return self._generate("image_to_image", output_dir, prompt, image, strength, **settings)

    def inpaint(self, prompt, image, mask_image, output_dir=None, **settings):
        """Repaint where `mask_image` is white; images as for image_to_image."""
        image, mask = api.load_image(image, "image"), api.load_image(mask_image, "mask_image")
        self._check_before_loading(
            prompt, settings, settings.get("num_images", 1), settings.get("strength", 1.0)
        )
        return self._generate("inpaint", output_dir, prompt, image, mask, **settings)

    def _generate(self, method, output_dir, *args, num_images=1, progress=False, **settings):
        pipeline = self.pipeline  # loads the model on first use
        with self._lock, dynamic_graph():
            result = getattr(pipeline, method)(
                *args, num_images_per_prompt=num_images, progress=progress, **settings
            )
        # Numbered PNGs with a `parameters` chunk, as `paddiff generate` writes them.
        paths = result.save(output_dir) if output_dir else [None] * len(result.images)
        verdicts = result.verdicts or [None] * len(result.images)
        return [
            {
                "image": image,
                "seed": settings["seed"],
                "settings": settings,
                "path": path,
                "verdict": verdict,  # the image safety check's verdict (flagged images are black)
                "prompt_verdicts": result.prompt_verdicts,
                "prompt_warnings": result.prompt_warnings,  # e.g. words the model never learnt
            }
            for image, settings, path, verdict in zip(
                result.images, result.settings, paths, verdicts, strict=True
            )
        ]

    # Choosing a request's LoRAs and generating with them is one step (docs/adapters.md).
    _adapters_lock = threading.Lock()

    def _with_adapters(self, method, positional, arguments):
        """Generate with exactly the request's LoRAs enabled ((file, weight) pairs that
        paddiff.serving resolved in the operator's folders; loaded once, then re-weighted) and
        its embeddings added (they stay)."""
        from paddiff.webui import use_adapters

        loras, embeddings = arguments.pop("loras", ()), arguments.pop("embeddings", ())
        with self._adapters_lock:
            with dynamic_graph():
                use_adapters(self.pipeline, loras, embeddings)
            return getattr(self, method)(*positional, **arguments)

    @serving
    def serve(self, **request):
        """POST /predict/paddiff: JSON fields in, base64 PNGs with their seed and settings out."""
        from paddiff.safety import check_prompt

        _check_body_size(self.limits)
        try:
            prompt, negative = request.get("prompt"), request.get("negative_prompt")
            if isinstance(prompt, str):  # refused before the model is loaded or anything decoded
                check_prompt(prompt, negative if isinstance(negative, str) else None, self._safety)
            parsed = api.parse_request(request, self.limits, self.pipeline.native_size())
            arguments = dict(parsed.arguments)
            positional = [arguments.pop(name) for name in _POSITIONAL[parsed.method]]
            started = time.perf_counter()
            outputs = self._with_adapters(parsed.method, positional, arguments)
        except (api.RequestError, paddiff.ValidationError) as exc:
            raise ValueError(f"invalid request: {exc}") from None
        except (LoraFormatError, LoraMismatchError) as exc:  # a file of the operator's folder
            raise ValueError(f"LoRA refused: {exc}") from None
        except paddiff.SafetyBlocked as exc:  # raised before the model runs
            # Its message names the category only, never the matched term (docs/safety.md).
            raise ValueError(str(exc)) from None
        return {
            "images": [
                {
                    "image": api.encode_png(item["image"]),
                    "seed": item["seed"],
                    "settings": api.jsonable(item["settings"]),
                    "safety": api.verdict_json(item["verdict"]),
                }
                for item in outputs
            ],
            "prompt_verdicts": [api.verdict_json(v) for v in outputs[0]["prompt_verdicts"]],
            "prompt_warnings": outputs[0]["prompt_warnings"],
            "seconds": round(time.perf_counter() - started, 3),
        }

    def create_gradio_app(self):
        """The web page at `/gradio/paddiff` of `hub serving` (the same as `paddiff webui`).

        PaddleHub calls `.launch(server_port=PORT)` on the returned object in a forked process
        and proxies `/gradio/paddiff/...` to it; the page uses this module's pipeline, lock and
        limits, so it validates and limits exactly as `POST /predict/paddiff` does.
        """
        from paddiff import webui

        return webui.WebApp(webui.Generator(self.pipeline, self.limits, self._lock, dynamic_graph))

    @runnable
    def run_cmd(self, argv):
        """`hub run paddiff --prompt ... --output_dir out`: writes PNGs, returns their paths."""
        args = _command_parser().parse_args(argv)
        settings = {
            name: getattr(args, name)
            for name in ("negative_prompt", "steps", "guidance_scale", "width", "height", "seed")
            if getattr(args, name) is not None
        }
        settings.update(num_images=args.num_images, scheduler=args.scheduler, progress=True)
        with command_line_errors():
            outputs = self._run_parsed(args, settings)
        return [str(item["path"]) for item in outputs]

    def _run_parsed(self, args, settings):
        if args.mask:
            return self.inpaint(args.prompt, args.image, args.mask, args.output_dir, **settings)
        if args.image:
            return self.image_to_image(
                args.prompt, args.image, args.strength, args.output_dir, **settings
            )
        return self.text_to_image(args.prompt, output_dir=args.output_dir, **settings)


# The leading parameters of the three generation methods, in order.
_POSITIONAL = {
    "text_to_image": ("prompt",),
    "image_to_image": ("prompt", "image"),
    "inpaint": ("prompt", "image", "mask_image"),
}


def _command_parser():
    # The documented spellings are the `paddiff` CLI's (--guidance, --count, --negative); the
    # keyword names of the Python API (--guidance_scale, --num_images, --negative_prompt) are
    # accepted too.
    parser = argparse.ArgumentParser(
        prog="hub run paddiff",
        description="Generate images with paddiff (the same settings as `paddiff generate`).",
    )
    parser.add_argument("--prompt", required=True, help="what to draw (Chinese or English)")
    parser.add_argument(
        "--negative",
        "--negative_prompt",
        dest="negative_prompt",
        help="negative prompt",
    )
    parser.add_argument(
        "--output_dir",
        default="paddiff_output",
        help="folder for the numbered PNGs (default paddiff_output)",
    )
    parser.add_argument("--steps", type=int, help="denoising steps (default 20)")
    parser.add_argument(
        "--guidance",
        "--guidance_scale",
        dest="guidance_scale",
        type=float,
        help="classifier-free guidance scale (default 7.5)",
    )
    parser.add_argument("--width", type=int, help="default: the model's size")
    parser.add_argument("--height", type=int, help="default: the model's size")
    parser.add_argument("--seed", type=int, help="seed of the first image (the next get seed+1)")
    parser.add_argument(
        "-n",
        "--count",
        "--num_images",
        dest="num_images",
        type=int,
        default=1,
        help="number of images (default 1)",
    )
    parser.add_argument(
        "--scheduler", help='sampler, e.g. "dpm++2m-karras" or "Euler a"; default: the model\'s'
    )
    parser.add_argument("--image", help="start from this image (image-to-image)")
    parser.add_argument("--mask", help="repaint where this mask is white (needs --image)")
    parser.add_argument(
        "--strength", type=float, default=0.8, help="how much to change --image, 0 to 1 (0.8)"
    )
    return parser


def _check_body_size(limits):
    """Refuse an oversized body with a clear message (Flask itself would accept any size)."""
    import flask

    if not flask.has_request_context():
        return
    size = flask.request.content_length or len(flask.request.get_data())
    if size > limits.max_body_bytes:
        raise ValueError(
            f"invalid request: the body is {size} bytes; this server accepts at most "
            f"{limits.max_body_bytes} (PADDIFF_MAX_BODY_BYTES)"
        )
