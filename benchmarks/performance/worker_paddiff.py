"""Times the workloads with paddiff: `static` (exported programs, Paddle Inference + oneDNN, the
default for generation) or `dynamic` (Paddle's dynamic graph). Run by run.py."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import paddiff
import paddle
import workloads as w
from paddiff.plugins.denoisers.unet import UNet2DConditionModel
from paddiff.plugins.inference.cache import ExportCache
from paddiff.plugins.inference.runner import GraphRunner
from paddiff.plugins.schedulers.ddim import DDIMScheduler
from paddiff.plugins.text_encoders.clip import DEFAULTS as CLIP_DEFAULTS
from paddiff.plugins.text_encoders.clip import CLIPTextNetwork
from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL


def main() -> None:
    mode = sys.argv.pop(1)
    if mode not in ("static", "dynamic"):
        sys.exit("usage: worker_paddiff.py static|dynamic [workload ...]")
    paddle.seed(0)
    for name in w.selected(sys.argv):
        run(name, mode)


def runner_for(layer, component: str, mode: str) -> GraphRunner:
    runner = GraphRunner(layer, component)
    if mode == "static":
        runner.use_static(ExportCache(os.environ.get("BENCH_CACHE_DIR")))
    return runner


def run(name: str, mode: str) -> None:
    repeats = w.WORKLOADS[name][1]
    extra = {"versions": {"paddle": paddle.__version__, "paddiff": paddiff.__version__}}
    start = time.perf_counter()
    if name.startswith("unet"):
        unet = UNet2DConditionModel(w.UNET)
        inputs = w.unet_inputs(int(name[4:]))
        unet.runner = runner_for(unet.net, "unet", mode)
        extra["build_s"] = time.perf_counter() - start
        times = w.time_it(lambda: unet(*inputs), repeats)
    elif name.startswith("vae"):
        vae = AutoencoderKL(w.VAE)
        vae.runner = runner_for(vae.net, "vae_decoder", mode)
        size = int(name[3:]) // 8
        z = np.random.default_rng(0).standard_normal((1, 4, size, size), dtype=np.float32)
        times = w.time_it(lambda: vae.decode(z), repeats)
    elif name == "text":
        text = CLIPTextNetwork({**CLIP_DEFAULTS, **w.CLIP_TEXT})
        text.eval()
        runner = runner_for(text, "text_encoder", mode)
        ids = w.token_ids()
        times = w.time_it(lambda: runner(ids), repeats)
    else:  # e2e256
        unet = UNet2DConditionModel(w.UNET)
        unet.runner = runner_for(unet.net, "unet", mode)
        vae = AutoencoderKL(w.VAE)
        vae.runner = runner_for(vae.net, "vae_decoder", mode)
        text_net = CLIPTextNetwork({**CLIP_DEFAULTS, **w.CLIP_TEXT})
        text_net.eval()
        text = runner_for(text_net, "text_encoder", mode)
        scheduler = DDIMScheduler.from_config(
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
        )
        ids = w.token_ids()

        def generate():
            ctx = text(ids)
            scheduler.set_timesteps(20)
            latents = paddiff.randomness.Generator(0).randn((1, 4, 32, 32))
            for t in scheduler.timesteps:
                out = unet(np.concatenate([latents] * 2), t, ctx)
                uncond, cond = out[:1], out[1:]
                latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
            return vae.decode(latents / 0.18215)

        times = w.time_it(generate, repeats)
    w.report(f"paddiff ({mode})", name, times, **extra)


if __name__ == "__main__":
    main()
