"""Times the workloads with diffusers on PyTorch (CPU, eager). Run by run.py in its own venv."""

from __future__ import annotations

import os
import sys

import torch
import workloads as w
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    for name in w.selected(sys.argv):
        run(name)


@torch.no_grad()
def run(name: str) -> None:
    repeats = w.WORKLOADS[name][1]
    extra = {
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__}
    }
    if name.startswith("unet"):
        unet = UNet2DConditionModel(**w.UNET).eval()
        x, t, ctx = (torch.from_numpy(a) for a in w.unet_inputs(int(name[4:])))
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            unet(x, t, ctx)
        extra["flops"] = counter.get_total_flops()
        times = w.time_it(lambda: unet(x, t, ctx), repeats)
    elif name.startswith("vae"):
        vae = AutoencoderKL(**w.VAE).eval()
        z = torch.randn(1, 4, int(name[3:]) // 8, int(name[3:]) // 8)
        times = w.time_it(lambda: vae.decode(z).sample, repeats)
    elif name == "text":
        text = CLIPTextModel(CLIPTextConfig(**w.CLIP_TEXT)).eval()
        ids = torch.from_numpy(w.token_ids())
        times = w.time_it(lambda: text(ids).last_hidden_state, repeats)
    else:  # e2e256
        unet = UNet2DConditionModel(**w.UNET).eval()
        vae = AutoencoderKL(**w.VAE).eval()
        text = CLIPTextModel(CLIPTextConfig(**w.CLIP_TEXT)).eval()
        scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        ids = torch.from_numpy(w.token_ids())

        def generate():
            ctx = text(ids).last_hidden_state
            scheduler.set_timesteps(20)
            latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
            for t in scheduler.timesteps:
                out = unet(torch.cat([latents] * 2), t, ctx).sample
                uncond, cond = out.chunk(2)
                latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
            return vae.decode(latents / 0.18215).sample

        times = w.time_it(generate, repeats)
    w.report("diffusers (torch eager)", name, times, **extra)


if __name__ == "__main__":
    main()
