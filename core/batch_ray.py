"""`paddiff batch --ray ADDRESS`: the batch's tasks on a Ray cluster, through Ray Data.

The tasks become a Ray dataset of one task per row; `map_batches` runs them on an actor pool of
`workers` actors, each holding a `TaskRunner` (so one loaded pipeline per model per actor) and
asking Ray for `num_cpus` / `num_gpus`. Actors write the images straight into the output folder,
which must be the same path on every node (a shared file system); the rows that come back are
the metadata records, and only this process (the driver) writes `metadata.jsonl`.

Exactly once holds as on one machine: an image's name is its settings' digest and it is written
atomically, so a task that Ray runs again after a worker died rewrites the same bytes under the
same name, and the driver records each task's result once. If the dataset still fails (every
restart used up), the driver plans again from what is on disk and runs what is missing, up to
`attempts` times.

Ray is an optional dependency: `pip install paddiff[ray]`.
"""

from __future__ import annotations

import json
import logging
import os

from paddiff.batch import Executor, TaskRunner, limit_threads

ATTEMPTS = 3


class RayTaskRunner:
    """The actor class Ray Data instantiates `workers` times: a batch of rows in, results out."""

    def __init__(self, runner_options: dict, threads: int):
        limit_threads(threads)  # before the first model load imports Paddle
        self.runner = TaskRunner(**runner_options)
        self.pid = os.getpid()

    def __call__(self, batch: dict) -> dict:
        results = []
        for text in batch["task"]:
            task = json.loads(text)
            results.append(json.dumps({**self.runner(task), "index": task["index"]}))
        return {"result": results}


def run_ray(
    address: str,
    workers: int,
    runner_options: dict,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    attempts: int = ATTEMPTS,
) -> Executor:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(
            "--ray needs Ray Data: pip install 'paddiff[ray]' (or 'ray[data]')"
        ) from None
    num_cpus = 1.0 if num_cpus is None else num_cpus

    def execute(tasks, on_result):
        if not ray.is_initialized():
            local = {}
            if str(address).split(":")[0] in ("127.0.0.1", "localhost"):
                # a cluster on loopback: the driver must say so too, or Ray advertises it (and
                # its workers connect back to it) at the machine's network address
                local["_node_ip_address"] = "127.0.0.1"
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **local)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the batch has its own bar
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        remaining = {index: task for index, task in enumerate(tasks)}
        for attempt in range(attempts):
            if not remaining:
                return
            try:
                for result in _run_once(
                    ray, list(remaining.items()), workers, runner_options, num_cpus, num_gpus
                ):
                    index = result.pop("index")
                    if remaining.pop(index, None) is not None:
                        on_result(result)
            except Exception as exc:  # a Ray failure: run what is missing again
                if attempt == attempts - 1:
                    raise RuntimeError(f"Ray batch failed {attempts} times: {exc}") from exc

    return execute


def _run_once(ray, items, workers, runner_options, num_cpus, num_gpus):
    rows = [{"task": json.dumps({**task, "index": index})} for index, task in items]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    results = dataset.map_batches(
        RayTaskRunner,
        batch_size=1,
        concurrency=workers,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_kwargs={
            "runner_options": runner_options,
            "threads": max(1, int(num_cpus)),
        },
        # a killed actor is restarted and its task run again (rewriting the same file)
        max_restarts=-1,
        max_task_retries=-1,
    )
    for row in results.iter_rows():
        result = json.loads(row["result"])
        yield result
