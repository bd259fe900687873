"""Times the workloads with paddiff's own components: `static` (exported programs run by Paddle
Inference with oneDNN, the default for generation), `static-bf16` (the same programs with
precision="bf16") or `dynamic` (Paddle's dynamic graph).
Run by run.py; exported programs are cached in $BENCH_CACHE_DIR, so only a first run exports."""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import numpy as np
import paddiff
import paddle
import workloads as w
from paddiff import registry
from paddiff.execution import set_execution
from paddiff.plugins.denoisers.unet import UNet2DConditionModel
from paddiff.plugins.text_encoders.clip import CLIPTextModel
from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL
from paddiff.sampling import plan_sampling
from paddiff.sampling.denoiser import GuidedNetwork


def main() -> None:
    mode = sys.argv.pop(1)
    if mode not in ("static", "static-bf16", "dynamic"):
        sys.exit("usage: worker_paddiff.py static|static-bf16|dynamic [workload ...]")
    paddle.seed(0)
    for name in w.selected(sys.argv):
        run(name, mode)


def build(kinds: list[str], mode: str) -> dict:
    """paddiff's components with SD 1.5's configs and random weights, in `mode`."""
    made = {}
    if "unet" in kinds:
        made["unet"] = UNet2DConditionModel(w.UNET)
    if "vae" in kinds:
        made["vae"] = AutoencoderKL(w.VAE)
    if "text" in kinds:
        # token ids are fed directly (as in the other workers), so no vocabulary is needed
        made["text"] = CLIPTextModel(w.CLIP_TEXT, tokenizer=SimpleNamespace(max_length=77))
    execution, _, precision = mode.partition("-")
    return set_execution(made, execution, os.environ.get("BENCH_CACHE_DIR"), precision or None)


def run(name: str, mode: str) -> None:
    repeats = w.WORKLOADS[name][1]
    extra = {"versions": {"paddle": paddle.__version__, "paddiff": paddiff.__version__}}
    start = time.perf_counter()
    if name.startswith("unet"):
        unet = build(["unet"], mode)["unet"]
        inputs = w.unet_inputs(int(name[4:]))
        extra["build_s"] = round(time.perf_counter() - start, 1)
        times = w.time_it(lambda: unet(*inputs), repeats)
    elif name.startswith("vae"):
        vae = build(["vae"], mode)["vae"]
        size = int(name[3:]) // 8
        z = np.random.default_rng(0).standard_normal((1, 4, size, size), dtype=np.float32)
        times = w.time_it(lambda: vae.decode(z), repeats)
    elif name == "text":
        text = build(["text"], mode)["text"]
        ids = w.token_ids()
        times = w.time_it(lambda: text.runner(ids), repeats)
    elif name == "e2e256":
        parts = build(["unet", "vae", "text"], mode)
        unet, vae, text = parts["unet"], parts["vae"], parts["text"]
        scheduler = registry.get("schedulers", "DDIMScheduler").from_config(
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
        )
        ids = w.token_ids()

        def generate(steps=20):
            context = text.runner(ids)  # [unconditional, prompt]
            plan = plan_sampling(scheduler, steps)
            network = GuidedNetwork(unet, [context[1:]], [context[:1]], guidance_scale=7.5)
            latents = plan.initial(paddiff.randomness.Generator(0).randn((1, 4, 32, 32)))
            latents = plan.sample(network, "epsilon", latents, noise=None)
            return vae.decode(latents / 0.18215)

        times = w.time_it(generate, repeats, warmup=lambda: generate(2))
    else:  # embedded8: the model paddiff ships, through the real pipeline
        times = embedded(mode, repeats, extra)
        if times is None:
            return
    extra["first_call_s"] = round(w.LAST_WARMUP_S, 2)
    w.report(f"paddiff ({mode.replace('-', ' ')})", name, times, **extra)


def embedded(mode: str, repeats: int, extra: dict) -> list[float] | None:
    """One 8-step image from the embedded model ($BENCH_EMBEDDED_MODEL overrides its folder),
    through `load_pipeline`."""
    default = os.path.join(os.path.dirname(paddiff.plugins.__file__), "embedded", "model")
    folder = os.environ.get("BENCH_EMBEDDED_MODEL") or default
    if not os.path.isfile(os.path.join(folder, "model_index.json")):
        print(f"skipped embedded8: no embedded model at {folder}", file=sys.stderr)
        return None
    cache_dir = os.environ.get("BENCH_CACHE_DIR")
    extra["model"] = folder
    from paddiff.pipeline import load_pipeline

    extra["through"] = "load_pipeline"
    execution, _, precision = mode.partition("-")
    pipeline = load_pipeline(
        folder,
        execution=execution,
        cache_dir=cache_dir,
        precision=precision or None,
        safety_filters=[],
    )
    extra["image_size"] = list(pipeline.native_size())
    return w.time_it(lambda: pipeline.text_to_image(PROMPT, steps=8, seed=0), repeats)


PROMPT = "一只红色的猫"


if __name__ == "__main__":
    main()
