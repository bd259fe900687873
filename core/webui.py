"""The web page: one HTML file (paddiff/web/index.html) and a small JSON API, on the standard library.

Served two ways, the same page and the same API:

- `hub serving start -m paddiff`: PaddleHub routes `/gradio/paddiff` to the module's
  `create_gradio_app()`, calls `.launch(server_port=PORT)` on what it returns in a forked process,
  and proxies `/gradio/paddiff/<path>` to `http://localhost:PORT/<path>` (`app` -> `/`).
- `paddiff webui`: this server on its own, for one pipeline.

Why not gradio: PaddleHub's proxy buffers each answer whole and its Flask server answers one
request at a time, so gradio's streamed queue (server-sent events) cannot report progress through
it; and gradio 5.1, which paddlehub pulls in, does not start next to the fastapi/starlette pip
pairs it with. So generation here is a job: `POST api/jobs` validates the request (the same
`paddiff.serving.parse_request` and `ServingLimits` as `POST /predict/paddiff`) and starts it,
and the page polls `GET api/jobs/<id>` for the step count and, at the end, the images. Every URL
in the page is relative, so it works under any prefix.

API (JSON): `GET api/options` (limits, samplers, default size, LoRA choices, control-net names
and preprocessor names);
`POST api/jobs` with the fields of `POST /predict/paddiff` -> `{"job": id}` or
`{"error": message}` (HTTP 400); `GET api/jobs/<id>` -> `{"state": "waiting" | "running" |
"done" | "error", "step", "total", "images": [{"png": base64 PNG with its `parameters` chunk,
"seed", "parameters", "safety"}], "error"}`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from paddiff import serving

KEPT_JOBS = 32  # finished jobs kept for the page to collect; older ones are dropped


def page_html() -> bytes:
    return resources.files("paddiff").joinpath("web/index.html").read_bytes()


def sampler_choices(limits: serving.ServingLimits) -> list[str]:
    """WebUI sampler names (the spelling with capitals in paddiff.scheduler_names), those a
    request may use under `limits`."""
    from paddiff.scheduler_names import ALIASES

    names = [next((n for n in names if n != n.lower()), names[0]) for names, _, _ in ALIASES]
    allowed = limits.allowed_schedulers
    if allowed is None:
        return names
    return [name for name in names if name in allowed or serving._same_scheduler(name, allowed)]


def lora_choices(limits: serving.ServingLimits) -> list[str]:
    """The names of the LoRA files in the operator's folders, as a request may give them."""
    from paddiff.weights import WEIGHT_SUFFIXES

    names = set()
    for folder in map(Path, limits.lora_dirs):
        if folder.is_dir():
            names.update(f.stem for f in folder.iterdir() if f.suffix in WEIGHT_SUFFIXES)
    return sorted(names)


def use_adapters(pipeline, loras, embeddings) -> None:
    """Exactly the request's LoRAs enabled ((file, weight) pairs that paddiff.serving resolved
    in the operator's folders; each loaded once, then re-weighted) and its embeddings added."""
    for path in embeddings:
        if path not in pipeline.embeddings.values():
            pipeline.load_textual_inversion(path)
    if loras or pipeline.get_active_adapters():
        pipeline.lora.use(loras)


class Generator:
    """One request dict -> images, through the same validation as `hub serving`.

    `lock` serialises generation (shared with the hub module's own calls); `context` is entered
    around each call (the hub module passes its dynamic-graph guard).
    """

    def __init__(self, pipeline, limits=None, lock=None, context=contextlib.nullcontext):
        self.pipeline = pipeline
        self.limits = limits or serving.ServingLimits.from_env()
        self.lock = lock or threading.Lock()
        self.context = context
        self.controlnets: dict = {}  # loaded control nets by path: the operator's few

    def options(self) -> dict:
        from paddiff.control import preprocessor_names
        from paddiff.control.requests import controlnet_names

        width, height = self.pipeline.native_size()
        limits = self.limits
        return {
            "width": width,
            "height": height,
            "max_pixels": limits.max_pixels,
            "max_steps": limits.max_steps,
            "max_images": limits.max_images,
            "max_prompt_chars": limits.max_prompt_chars,
            "samplers": sampler_choices(limits),
            "model": getattr(self.pipeline, "model_name", ""),
            # The page shows a choice only when a list is not empty: the LoRAs and control nets
            # in the operator's folders ($PADDIFF_LORA_DIR, $PADDIFF_CONTROLNET_DIR; requests
            # name them, never a path).
            "loras": lora_choices(limits),
            "controls": controlnet_names(limits.controlnet_dirs),
            "max_controlnets": limits.max_controlnets,
            "preprocessors": preprocessor_names(),
        }

    def parse(self, fields: dict):
        """Validate; raises serving.RequestError with a message naming the field."""
        if not isinstance(fields, dict):
            raise serving.RequestError("the request must be a JSON object")
        return serving.parse_request(fields, self.limits, self.pipeline.native_size())

    def run(self, parsed, callback=None) -> list[dict]:
        from paddiff.control.requests import control_arguments
        from paddiff.png_info import format_parameters
        from PIL.PngImagePlugin import PngInfo

        arguments = dict(parsed.arguments)
        count = arguments.pop("num_images", 1)
        loras, embeddings = arguments.pop("loras", ()), arguments.pop("embeddings", ())
        controls, guess = arguments.pop("controls", []), arguments.pop("guess_mode", False)
        with self.lock, self.context():
            use_adapters(self.pipeline, loras, embeddings)
            # exactly the request's control nets (none: unloaded), as hub serving does
            arguments.update(control_arguments(self.pipeline, controls, guess, self.controlnets))
            result = getattr(self.pipeline, parsed.method)(
                num_images_per_prompt=count, progress=False, callback=callback, **arguments
            )
        verdicts = result.verdicts or [None] * len(result.images)
        images = []
        for image, settings, verdict in zip(result.images, result.settings, verdicts, strict=True):
            text = format_parameters(settings)
            info = PngInfo()
            info.add_text("parameters", text)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info)
            images.append(
                {
                    "png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                    "seed": settings["seed"],
                    "parameters": text,
                    "safety": serving.verdict_json(verdict),
                }
            )
        return images


def error_message(exc: Exception) -> str:
    """What the page shows for a failed request: the same words `hub serving` answers with."""
    import paddiff

    if isinstance(exc, (serving.RequestError, paddiff.ValidationError)):
        return f"invalid request: {exc}"
    return str(exc)  # SafetyBlocked names the category only, never the matched term


class Job:
    def __init__(self):
        self.state, self.step, self.total = "waiting", 0, 0
        self.images: list = []
        self.error = ""
        self.seconds = 0.0

    def as_json(self) -> dict:
        return {
            "state": self.state,
            "step": self.step,
            "total": self.total,
            "images": self.images,
            "error": self.error,
            "seconds": self.seconds,
        }


class WebApp:
    """The page and its API over one Generator. `launch` is what PaddleHub calls."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._jobs_lock = threading.Lock()

    def submit(self, fields) -> str:
        parsed = self.generator.parse(fields)  # refused here, before a job exists
        job = Job()
        with self._jobs_lock:
            job_id = str(next(self._ids))
            self.jobs[job_id] = job
            while len(self.jobs) > KEPT_JOBS:
                self.jobs.popitem(last=False)
        threading.Thread(target=self._work, args=(job, parsed), daemon=True).start()
        return job_id

    def _work(self, job: Job, parsed) -> None:
        def progress(info):
            job.state, job.step, job.total = "running", info.step + 1, info.total_steps

        started = time.perf_counter()
        try:
            job.images = self.generator.run(parsed, progress)
            job.state = "done"
        except Exception as exc:  # shown on the page; the server keeps serving
            job.error, job.state = error_message(exc), "error"
        job.seconds = round(time.perf_counter() - started, 3)

    def server(self, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet: the page polls twice a second
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0].rstrip("/")
                if path in ("", "/app", "/index.html"):
                    return self._send(200, page_html(), "text/html; charset=utf-8")
                if path == "/api/options":
                    return self._json(200, app.generator.options())
                if path.startswith("/api/jobs/"):
                    job = app.jobs.get(path.rsplit("/", 1)[1])
                    if job is None:
                        return self._json(404, {"error": "no such job (finished long ago?)"})
                    return self._json(200, job.as_json())
                return self._json(404, {"error": f"not found: {path}"})

            def do_POST(self):
                if self.path.split("?", 1)[0].rstrip("/") != "/api/jobs":
                    return self._json(404, {"error": "not found"})
                size = int(self.headers.get("Content-Length") or 0)
                limit = app.generator.limits.max_body_bytes
                if size > limit:
                    message = (
                        f"invalid request: the body is {size} bytes; this server accepts at "
                        f"most {limit} (PADDIFF_MAX_BODY_BYTES)"
                    )
                    return self._json(413, {"error": message})
                try:
                    fields = json.loads(self.rfile.read(size) or b"null")
                    return self._json(200, {"job": app.submit(fields)})
                except json.JSONDecodeError:
                    return self._json(400, {"error": "invalid request: the body is not JSON"})
                except Exception as exc:
                    return self._json(400, {"error": error_message(exc)})

            def _json(self, status, value):
                body = json.dumps(value, ensure_ascii=False).encode("utf-8")
                self._send(status, body, "application/json; charset=utf-8")

            def _send(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        return ThreadingHTTPServer((host, port), Handler)

    def launch(self, server_port: int = 7860, server_name: str = "127.0.0.1", **_ignored):
        """Serve until stopped (gradio's `launch` spelling, which PaddleHub calls)."""
        with self.server(server_name, server_port) as httpd:
            httpd.serve_forever()
