"""LoRA on a warm SD 1.5-size pipeline with exported programs: switch time, disk, and LCM-LoRA.

Measures, in one process (random weights: the numbers of interest are times and sizes):

- seconds per image at 20 steps (the model's scheduler, guidance 7.5) without a LoRA, and at
  4 steps with an LCM-LoRA-shaped adapter (rank 64 on the layers LCM-LoRA SD 1.5 trains),
  `LCMScheduler`, guidance 1;
- seconds to load that LoRA into the warm pipeline, to switch to another LoRA and back with
  `set_adapters`, and to unload, each until the next image can start (the exported programs
  are re-fed with the new weights, not exported again);
- the program cache's size on disk before and after (extra disk per LoRA);
- the same 4-step LCM run through the command line (`paddiff generate --lora ... --scheduler lcm
  --steps 4 --guidance 1`), wall time of the whole process.

    nice /work/torchvenv/bin/python benchmarks/make_fullsize_sd15.py /tmp/lora-sd15
    .venv/bin/python benchmarks/lora_switch.py /tmp/lora-sd15 --part switch --execution static
    .venv/bin/python benchmarks/lora_switch.py /tmp/lora-sd15 --part lcm --execution dynamic \
        --size 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the layers LCM-LoRA SD 1.5 (latent-consistency/lcm-lora-sdv1-5) trains, by module-name ending
LCM_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)  # fmt: skip
STYLE_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_q", "attn2.to_out.0")


def write_lora(pipe, path: Path, targets, rank: int, seed: int) -> int:
    """A kohya-format LoRA for the pipeline's UNet with random factors; returns its layer count."""
    import paddle
    from paddiff.weights import save_state_dict

    rng = np.random.default_rng(seed)
    state = {}
    for name, layer in pipe.denoiser.net.named_sublayers():
        if not name.endswith(targets):
            continue
        weight = tuple(layer.weight.shape)
        if isinstance(layer, paddle.nn.Linear):
            down_shape, up_shape = (rank, weight[0]), (weight[1], rank)
        else:
            down_shape, up_shape = (rank, *weight[1:]), (weight[0], rank, 1, 1)
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"] = (rng.standard_normal(down_shape) * 0.01).astype("f4")
        state[f"{key}.lora_up.weight"] = (rng.standard_normal(up_shape) * 0.01).astype("f4")
        state[f"{key}.alpha"] = np.asarray(float(rank), np.float32)
    save_state_dict(state, path)
    return len(state) // 3


def size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def rss_gb() -> float:
    """The process's resident memory now (Linux), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return float("nan")


def peak_rss_gb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--cache", default="/tmp/lora-cache")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--work", default="/tmp/lora-bench")
    parser.add_argument("--execution", default="static", choices=("static", "dynamic"))
    parser.add_argument(
        "--part",
        default="switch",
        choices=("switch", "lcm"),
        help="switch: load / switch / unload two attention LoRAs on the warm pipeline, disk; "
        "lcm: 20 steps without a LoRA against 4 LCM steps with an LCM-LoRA-shaped one, and the "
        "same through the command line",
    )
    parser.add_argument(
        "--shape",
        default="style",
        choices=("style", "lcm"),
        help="switch: the two LoRAs' layers: attention only (style) or LCM-LoRA's (nearly all)",
    )
    args = parser.parse_args()
    import paddiff

    model, cache, work = Path(args.model), Path(args.cache), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not (model / "tokenizer").is_dir():  # the random folder has none: SD's, which paddiff ships
        from paddiff.plugins.text_encoders.clip import CLIPTextModel

        CLIPTextModel.shipped_tokenizer().save_pretrained(model / "tokenizer")
    results: dict = {"execution": args.execution, "size": args.size}
    results["load_pipeline_s"], pipe = timed(
        lambda: paddiff.load_pipeline(model, execution=args.execution, cache_dir=cache)
    )
    common = dict(width=args.size, height=args.size, seed=1, progress=False)
    results["first_image_4_steps_s (export or cache load, warm-up)"], _ = timed(
        lambda: pipe.text_to_image("a cat", steps=4, **common)
    )
    results["rss_gb_after_first_image"] = rss_gb()
    if args.part == "switch":
        switch(pipe, work, cache, common, results, args.shape)
    else:
        lcm(pipe, model, work, cache, common, results, args)
    print(json.dumps(results, indent=1))


def switch(pipe, work, cache, common, results, shape="style") -> None:
    targets, rank = (LCM_TARGETS, 64) if shape == "lcm" else (STYLE_TARGETS, 16)
    results["cache_disk_bytes_before"] = size_of(cache)
    results["image_4_steps_no_lora_s"], _ = timed(
        lambda: pipe.text_to_image("a cat", steps=4, **common)
    )
    first, second = work / "style_a.safetensors", work / "style_b.safetensors"
    results["lora_shape"] = shape
    results["lora_layers"] = write_lora(pipe, first, targets, rank, 2)
    write_lora(pipe, second, targets, rank, 3)
    results["lora_file_bytes"] = first.stat().st_size
    results["load_first_lora_s"], _ = timed(lambda: pipe.load_lora_weights(first, "a"))
    results["rss_gb_after_load_lora"] = rss_gb()
    results["image_4_steps_lora_s"], _ = timed(
        lambda: pipe.text_to_image("a cat", steps=4, **common)
    )
    results["rss_gb_after_image_with_lora"] = rss_gb()
    results["load_second_lora_s"], _ = timed(lambda: pipe.load_lora_weights(second, "b"))
    results["switch_set_adapters_to_b_s"], _ = timed(lambda: pipe.set_adapters(["b"]))
    results["switch_set_adapters_a_b_0.7_0.4_s"], _ = timed(
        lambda: pipe.set_adapters(["a", "b"], [0.7, 0.4])
    )
    results["image_after_switches_4_steps_s"], _ = timed(
        lambda: pipe.text_to_image("a cat", steps=4, **common)
    )
    results["rss_gb_after_switches_and_image"] = rss_gb()
    results["extra_disk_while_lora_active_bytes"] = sum(
        f.stat().st_size for f in cache.glob("paddiff-live-*/*.pdiparams")
    )
    results["unload_s"], _ = timed(pipe.unload_lora_weights)
    results["peak_rss_gb"] = peak_rss_gb()
    results["cache_disk_bytes_after"] = size_of(cache)
    results["programs_in_cache"] = sorted(
        str(p.parent.relative_to(cache)) for p in cache.rglob("program.json")
    )


def lcm(pipe, model, work, cache, common, results, args) -> None:
    results["image_20_steps_no_lora_guidance_7.5_s"], _ = timed(
        lambda: pipe.text_to_image("a cat", steps=20, guidance_scale=7.5, **common)
    )
    path = work / "lcm_like.safetensors"
    results["lcm_layers"] = write_lora(pipe, path, LCM_TARGETS, 64, 1)
    results["lcm_file_bytes"] = path.stat().st_size
    results["load_lcm_lora_s"], _ = timed(lambda: pipe.load_lora_weights(path, "lcm"))
    lcm_pipe = pipe.with_components(scheduler="lcm")
    results["image_4_steps_lcm_lora_guidance_1_s"], _ = timed(
        lambda: lcm_pipe.text_to_image("a cat", steps=4, guidance_scale=1.0, **common)
    )
    pipe = lcm_pipe = None  # free the model before the command-line run
    command = [
        str(Path(sys.executable).parent / "paddiff"), "generate", "a cat",
        "--model", str(model), "--lora", str(path), "--scheduler", "lcm", "--steps", "4",
        "--guidance", "1", "--execution", args.execution, "--width", str(args.size),
        "--height", str(args.size), "--seed", "1", "--no-progress", "-o", str(work / "lcm.png"),
    ]  # fmt: skip
    env = {**os.environ, "PADDIFF_CACHE_DIR": str(cache)}
    results["cli_lcm_4_steps_whole_process_s"], done = timed(
        lambda: subprocess.run(command, capture_output=True, text=True, env=env)
    )
    results["cli_returncode"] = done.returncode
    results["cli_stderr_tail"] = done.stderr.strip().splitlines()[-3:]


if __name__ == "__main__":
    main()
