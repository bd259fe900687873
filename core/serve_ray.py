"""`paddiff serve --ray`: the `hub serving` request schema on Ray Serve, with replicas and
dynamic batching.

One Ray Serve deployment, `paddiff`, answers `POST /predict/paddiff` with the JSON body and the
reply shape of `hub serving start -m paddiff` (docs/serving.md). Each replica holds one loaded
pipeline. A replica checks every request on arrival (paddiff.serving_batch.BatchingServer,
the same checks as the PaddleHub module), then hands it to `generate`, which Ray Serve's
`@serve.batch` calls with the requests that arrived together (up to `max_batch_size`, waiting at
most `batch_wait_timeout_s` for more); compatible ones share one pipeline call. Generation runs
in one thread per replica, so the replica keeps accepting (and batching) requests meanwhile.

Ray Serve is an optional dependency: `pip install "paddiff[ray]"`.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

from paddiff import serving_batch
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

APP_NAME = "paddiff"
ROUTE = "/predict/paddiff"


class PaddiffReplica:
    """The deployment's class: `options` are plain values (they travel to the replica)."""

    def __init__(self, options: dict):
        from paddiff.batch import limit_threads

        limit_threads(options["threads"])  # before the model load imports Paddle
        import paddiff
        from paddiff.safety import load_filters

        model = options.get("model")
        model_dir = model if model and os.path.isdir(model) else None
        filters = load_filters(options.get("safety_config"), model_dir=model_dir)
        pipeline = paddiff.load_pipeline(
            model, safety_filters=filters, **options.get("loader_options", {})
        )
        if options.get("denoiser_batch_size", 1) != 1:
            pipeline.denoiser_batch_size = options["denoiser_batch_size"]
        self.server = serving_batch.BatchingServer(
            pipeline, options["limits"], options["max_batch_images"]
        )
        self.limits = options["limits"]
        self.name = serve.get_replica_context().replica_id.unique_id
        # one generation at a time per replica, off the event loop
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paddiff")
        self.generate.set_max_batch_size(options["max_batch_size"])
        self.generate.set_batch_wait_timeout_s(options["batch_wait_s"])

    async def __call__(self, request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > self.limits.max_body_bytes:
            return JSONResponse(
                serving_batch.reply_error(
                    f"invalid request: the body is {len(body)} bytes; this server accepts at "
                    f"most {self.limits.max_body_bytes} (PADDIFF_MAX_BODY_BYTES)"
                )
            )
        try:
            fields = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"msg": "the body is not JSON"}, status_code=400)
        prepared = self.server.prepare(fields)
        if isinstance(prepared, dict):  # refused: the error reply
            return JSONResponse(prepared)
        reply = await self.generate(prepared)
        if reply["status"] == serving_batch.OK:  # which replica answered (for operators, tests)
            reply["results"]["batch"]["replica"] = self.name
        return JSONResponse(reply)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)  # set per deployment in __init__
    async def generate(self, items: list) -> list[dict]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.server.run, items)


def application(options: dict, replicas: int, num_cpus: float, num_gpus: float):
    """The Serve application: `replicas` copies of the deployment, each asking Ray for
    `num_cpus` / `num_gpus`. A replica takes up to 2 batches' worth of requests at once (the
    one running and the next one forming); further requests queue at the proxy."""
    deployment = serve.deployment(
        PaddiffReplica,
        name=APP_NAME,
        num_replicas=replicas,
        max_ongoing_requests=2 * options["max_batch_size"],
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
    )
    return deployment.bind(options)
