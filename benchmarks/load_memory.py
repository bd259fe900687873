"""Peak memory while loading a full-size SD 1.5 model (UNet + VAE + text encoder).

Prints the weights' size on disk, the process's resident memory before loading (Python, Paddle
and the plugins imported), its peak during loading (VmHWM) and after. Loading copies tensors into
the networks one at a time from memory-mapped files, so peak - before should stay close to the
size of the weights (the networks' own parameters), with no second full copy.

    nice /work/venv-ref/bin/python benchmarks/make_fullsize_sd15.py /work/fullsize-sd15
    .venv/bin/python benchmarks/load_memory.py /work/fullsize-sd15 [--variant fp16]
    .venv/bin/python benchmarks/load_memory.py /work/fullsize-sd15-original.safetensors

(the fp16 variant and the original-layout single file are written from the folder by
`benchmarks/make_fullsize_formats.py`).

The folder has no tokenizer/ (it holds no weights); the tiny fixture's tokenizer stands in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30


def status_gib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / GIB
    raise KeyError(field)


def weights_gib(folder: Path, variant: str | None) -> float:
    from paddiff.weights import find_component_weights

    if folder.is_file():  # a single-file checkpoint
        return folder.stat().st_size / GIB
    files = [
        f
        for sub in ("unet", "vae", "text_encoder")
        for f in find_component_weights(folder / sub, variant)
    ]
    return sum(f.stat().st_size for f in files) / GIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("/work/fullsize-sd15"))
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()

    import paddiff
    import paddle  # noqa: F401 (imported before the baseline, like the plugins below)
    from paddiff.loader import load_components

    for kind, name in [("denoisers", "UNet2DConditionModel"), ("vaes", "AutoencoderKL"),
                       ("text_encoders", "CLIPTextModel")]:  # fmt: skip
        paddiff.get(kind, name)  # import the plugin modules before measuring
    tokenizer = args.folder / "tokenizer"
    if not tokenizer.is_dir():  # (single files never have one)
        tokenizer = ROOT / "tests" / "fixtures" / "sd" / "sd1" / "tokenizer"

    size = weights_gib(args.folder, args.variant)
    before = status_gib("VmRSS")
    start = time.perf_counter()
    # The scheduler holds no weights; a placeholder keeps this independent of scheduler plugins.
    components = load_components(args.folder, args.variant, tokenizer=tokenizer, scheduler=object())
    seconds = time.perf_counter() - start
    peak, after = status_gib("VmHWM"), status_gib("VmRSS")
    params = sum(
        int(p.numel()) * 4 for name in ("denoiser", "vae", "text_encoder")
        for p in components[name].net.parameters()
    ) / GIB  # fmt: skip
    print(f"model:                     {args.folder} (variant {args.variant})")
    print(f"weights on disk:           {size:.2f} GiB")
    print(f"parameters in memory:      {params:.2f} GiB (float32)")
    print(f"RSS before loading:        {before:.2f} GiB")
    print(f"peak RSS while loading:    {peak:.2f} GiB (+{peak - before:.2f} GiB)")
    print(f"RSS after loading:         {after:.2f} GiB (+{after - before:.2f} GiB)")
    print(f"peak overhead over params: {peak - before - params:.2f} GiB")
    print(f"load time:                 {seconds:.1f} s")


if __name__ == "__main__":
    main()
