"""`paddiff export MODEL OUT_DIR`: write Paddle Inference programs for a model's networks.

Each network (UNet, VAE decoder and encoder, text encoder) is exported once with dynamic batch
and image size, into OUT_DIR laid out as paddiff's export cache, so generation can use it
directly: `PADDIFF_CACHE_DIR=OUT_DIR` or `load_components(MODEL, cache_dir=OUT_DIR)`. A
manifest.json lists the programs. Each program is then run once at --batch/--height/--width and
compared with the dynamic graph (skip with --no-check).
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("model", type=Path, help="model folder or single-file checkpoint")
    parser.add_argument("out_dir", type=Path, help="folder for the programs (an export cache)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (single files only)")
    parser.add_argument("--height", type=int, default=512, help="image height for the check")
    parser.add_argument("--width", type=int, default=512, help="image width for the check")
    parser.add_argument("--batch", type=int, default=2, help="UNet batch for the check (CFG: 2)")
    parser.add_argument(
        "--no-check", action="store_true", help="do not compare with the dynamic graph"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    import paddiff
    import paddle
    from paddiff.execution import ExportCache, networks_of, set_execution
    from paddiff.loader import load_components

    components = load_components(args.model, tokenizer=args.tokenizer, execution="dynamic")
    cache = ExportCache(args.out_dir)
    manifest = {
        "model": str(args.model.resolve()),
        "paddle": paddle.__version__,
        "paddiff": paddiff.__version__,
        "programs": {},
    }
    for name, component in components.items():
        for network in networks_of(component):
            expected = None if args.no_check else _sample_call(network, component, args)
            prefix = network.export(cache)
            entry = {
                "component": name,
                "program": str(prefix.relative_to(args.out_dir)),
                "inputs": [
                    {"name": s.name, "shape": s.shape, "dtype": s.dtype} for s in network.inputs
                ],
            }
            if expected is not None:
                inputs, want = expected
                set_execution(network, "static", cache=cache)
                entry["max_abs_error"] = _max_error(network(*inputs), want)
                set_execution(network, "dynamic")
            label = network.name
            manifest["programs"][label] = entry
            print(f"{label}: {prefix}" + _error_note(entry))
    (args.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(f"use it with PADDIFF_CACHE_DIR={args.out_dir} (or cache_dir= in load_components)")
    return 0


def _sample_call(network, component, args):
    """Inputs of the --batch/--height/--width generation for this network, and the dynamic
    graph's outputs for them."""
    import numpy as np

    rng = np.random.default_rng(0)
    factor = getattr(component, "downsample_factor", 8)
    arrays = []
    for spec in network.inputs:
        shape = list(spec.shape)
        if spec.dtype == "int64":  # token ids
            shape = [2 if shape[0] is None else shape[0], 77]
            arrays.append(rng.integers(0, 1000, size=shape).astype(np.int64))
            continue
        shape[0] = args.batch if shape[0] is None else shape[0]
        if len(shape) == 4:  # images or latents
            image = spec.name == "images"
            shape[2] = args.height // (1 if image else factor)
            shape[3] = args.width // (1 if image else factor)
        elif len(shape) == 3:  # text conditioning (batch, tokens, width)
            shape[1] = 77 if shape[1] is None else shape[1]
        if network.name == "vae_decoder" or spec.name == "images":
            shape[0] = 1
        values = rng.standard_normal(shape).astype(spec.dtype)
        if len(shape) == 1:  # timesteps
            values = np.full(shape, 500.0, spec.dtype)
        arrays.append(values)
    return arrays, network(*arrays)


def _max_error(got, want) -> float:
    import numpy as np

    pairs = zip(np.atleast_1d(got), np.atleast_1d(want), strict=True)
    return float(max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in pairs))


def _error_note(entry: dict) -> str:
    if "max_abs_error" not in entry:
        return ""
    return f" (max abs difference from the dynamic graph: {entry['max_abs_error']:.2e})"
