"""`paddiff webui`: the web page of `hub serving` (/gradio/paddiff), served on its own."""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument(
        "--model",
        help="model folder or single-file checkpoint; default: $PADDIFF_MODEL, else the "
        "embedded model",
    )
    parser.add_argument("--scheduler", default=None, help="default sampler; default: the model's")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every address)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--safety-config",
        help="JSON file configuring the safety filters (see docs/safety.md); default: "
        "$PADDIFF_SAFETY_CONFIG, else the shipped prompt term lists",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    """Load the model once, then serve until Ctrl-C. Request limits: PADDIFF_MAX_* as for
    `hub serving` (docs/serving.md)."""
    import os

    import paddiff
    from paddiff import webui
    from paddiff.safety import load_filters
    from paddiff.serving import ServingLimits

    model = args.model or os.environ.get("PADDIFF_MODEL") or None
    try:
        limits = ServingLimits.from_env()
        model_dir = model if model and Path(model).is_dir() else None
        config = args.safety_config or os.environ.get("PADDIFF_SAFETY_CONFIG") or None
        filters = load_filters(config, model_dir=model_dir)
        pipeline = paddiff.load_pipeline(model, scheduler=args.scheduler, safety_filters=filters)
        server = webui.WebApp(webui.Generator(pipeline, limits)).server(args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"paddiff: error: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"paddiff webui: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    with server:
        server.serve_forever()
    return 0
