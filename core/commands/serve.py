"""`paddiff serve --ray [ADDRESS]`: `POST /predict/paddiff` (the `hub serving` schema) on Ray
Serve, with replicas and dynamic batching (see paddiff.serve_ray and docs/batch.md)."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time

LOOPBACK = ("127.0.0.1", "localhost")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        nargs="?",
        const="local",
        default=None,
        help='serve on Ray Serve: a cluster\'s address (host:port), "auto" for the one this '
        "machine belongs to, or nothing for a Ray instance started by this command (needs "
        "`pip install paddiff[ray]`). Without --ray, use `hub serving start -m paddiff`",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the HTTP proxy listens on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    parser.add_argument("--port", type=int, default=8866, help="HTTP port (default 8866)")
    parser.add_argument("--replicas", type=int, default=1, help="pipeline replicas (default 1)")
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs per replica (default 1)")
    parser.add_argument("--num-gpus", type=float, default=0, help="GPUs per replica (default 0)")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=8,
        help="most requests one replica takes into a batch (default 8)",
    )
    parser.add_argument(
        "--max-batch-images",
        type=int,
        default=8,
        help="most images in one batched pipeline call (default 8)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=50,
        help="how long a replica waits for more requests before starting a batch (default 50)",
    )
    parser.add_argument(
        "--denoiser-batch-size",
        type=int,
        default=1,
        help="images per denoiser call within a batch (default 1: each image bit-identical to "
        "the same request alone; 0: the whole batch at once)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model folder or checkpoint (default $PADDIFF_MODEL, else the embedded model)",
    )
    parser.add_argument(
        "--safety-config",
        default=None,
        help="JSON file configuring the safety filters (default $PADDIFF_SAFETY_CONFIG, else "
        "the shipped defaults)",
    )
    parser.add_argument(
        "--execution",
        choices=("auto", "static", "dynamic"),
        help="execution mode (see docs/performance.md); default auto or $PADDIFF_EXECUTION",
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="default fp32")
    parser.set_defaults(run=run)


def _problem(args) -> str | None:
    if args.ray is None:
        return (
            "paddiff serve runs on Ray Serve: give --ray (see docs/batch.md); for one process "
            "use `hub serving start -m paddiff` (docs/serving.md)"
        )
    for name in ("replicas", "max_batch_size", "max_batch_images"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.num_cpus <= 0 or args.num_gpus < 0 or args.batch_wait_ms < 0:
        return "--num-cpus must be above 0, --num-gpus and --batch-wait-ms at least 0"
    if args.denoiser_batch_size < 0:
        return "--denoiser-batch-size must be at least 0"
    if not 0 < args.port < 65536:
        return f"--port must be between 1 and 65535, got {args.port}"
    return None


def run(args) -> int:
    problem = _problem(args)
    model = args.model or os.environ.get("PADDIFF_MODEL") or None
    if problem is None and model and not os.path.exists(model):
        problem = f"model not found: {model}"
    if problem:
        print(f"paddiff: error: {problem}", file=sys.stderr)
        return 1
    from paddiff.serving import ServingLimits

    try:
        limits = ServingLimits.from_env()  # a malformed PADDIFF_MAX_* stops the start
    except ValueError as exc:
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    _ray_environment(args.ray == "local")  # read by Ray when it is imported
    try:
        import ray
        from paddiff import serve_ray
        from ray import serve
    except ImportError:
        print("paddiff: error: --ray needs Ray Serve: pip install 'paddiff[ray]'", file=sys.stderr)
        return 1
    options = {
        "model": os.path.abspath(model) if model else None,
        "safety_config": args.safety_config or os.environ.get("PADDIFF_SAFETY_CONFIG") or None,
        "loader_options": {
            name: getattr(args, name)
            for name in ("execution", "precision")
            if getattr(args, name) is not None
        },
        "limits": limits,
        "threads": max(1, int(args.num_cpus)),
        "max_batch_size": args.max_batch_size,
        "max_batch_images": args.max_batch_images,
        "batch_wait_s": args.batch_wait_ms / 1000,
        "denoiser_batch_size": args.denoiser_batch_size or None,
    }
    started_here = args.ray == "local"
    _connect(ray, args.ray)
    # SIGTERM (a service manager's stop) ends the command as Ctrl-C does: the app is removed
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        began = time.perf_counter()
        app = serve_ray.application(options, args.replicas, args.num_cpus, args.num_gpus)
        serve.run(app, name=serve_ray.APP_NAME, route_prefix=serve_ray.ROUTE)
        print(
            f"paddiff: serving http://{args.host}:{args.port}{serve_ray.ROUTE} with "
            f"{args.replicas} replica(s) (ready in {time.perf_counter() - began:.1f} s); "
            "Ctrl-C stops",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            if started_here:
                serve.shutdown()
            else:  # leave the cluster's other Serve applications alone
                serve.delete(serve_ray.APP_NAME)
        finally:
            ray.shutdown()


def _ray_environment(local: bool) -> None:
    """Variables Ray reads when it is imported (and its processes inherit)."""
    # Keep a single-machine cluster on 127.0.0.1 (not the interface address; docs/batch.md)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if local and "RAY_AUTH_MODE" not in os.environ:
        # Ray 2.60 turns token authentication on for a new local cluster and, without a token,
        # writes one to ~/.ray/auth_token, which then switches every later `ray start` head of
        # this account to token mode. A token in this process's environment (which Ray's own
        # processes inherit) protects this instance the same way and leaves no file behind.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _connect(ray, address: str) -> None:
    import logging

    options = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **options,
        )
        return
    if str(address).split(":")[0] in LOOPBACK:
        options["_node_ip_address"] = "127.0.0.1"  # the driver must say so too (paddiff.batch_ray)
    ray.init(address=address, **options)
