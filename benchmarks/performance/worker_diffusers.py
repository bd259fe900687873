"""Times the workloads with diffusers on PyTorch (CPU, eager). Run by run.py in its own venv.

    python worker_diffusers.py [bf16] WORKLOAD ...

With `bf16`, the networks' weights and inputs are bfloat16 (what `torch_dtype=torch.bfloat16`
gives a diffusers user), for comparison with paddiff's `precision="bf16"`."""

from __future__ import annotations

import os
import sys

import torch
import workloads as w
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def main() -> None:
    global DTYPE
    if len(sys.argv) > 1 and sys.argv[1] == "process":
        one_image(*sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bf16":
        sys.argv.pop(1)
        DTYPE = torch.bfloat16
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    for name in w.selected(sys.argv):
        run(name)


DTYPE = torch.float32


def cast(*things):
    """Networks and float tensors in DTYPE (token ids stay integers)."""
    out = [
        t.to(DTYPE) if isinstance(t, torch.nn.Module) or t.is_floating_point() else t
        for t in things
    ]
    return out if len(out) > 1 else out[0]


@torch.no_grad()
def run(name: str) -> None:
    repeats = w.WORKLOADS[name][1]
    extra = {
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__}
    }
    if name.startswith("unet"):
        unet = cast(UNet2DConditionModel(**w.UNET).eval())
        x, t, ctx = (torch.from_numpy(a) for a in w.unet_inputs(int(name[4:])))
        x, ctx = cast(x, ctx)
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            unet(x, t, ctx)
        extra["flops"] = counter.get_total_flops()
        times = w.time_it(lambda: unet(x, t, ctx), repeats)
    elif name.startswith("vae"):
        vae = cast(AutoencoderKL(**w.VAE).eval())
        z = cast(torch.randn(1, 4, int(name[3:]) // 8, int(name[3:]) // 8))
        times = w.time_it(lambda: vae.decode(z).sample, repeats)
    elif name == "text":
        text = cast(CLIPTextModel(CLIPTextConfig(**w.CLIP_TEXT)).eval())
        ids = torch.from_numpy(w.token_ids())
        times = w.time_it(lambda: text(ids).last_hidden_state, repeats)
    else:  # e2e256
        unet = cast(UNet2DConditionModel(**w.UNET).eval())
        vae = cast(AutoencoderKL(**w.VAE).eval())
        text = cast(CLIPTextModel(CLIPTextConfig(**w.CLIP_TEXT)).eval())
        scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        ids = torch.from_numpy(w.token_ids())

        def generate(steps=20):
            ctx = text(ids).last_hidden_state
            scheduler.set_timesteps(steps)
            latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
            latents = cast(latents)
            for t in scheduler.timesteps:
                out = unet(torch.cat([latents] * 2), t, ctx).sample
                uncond, cond = out.chunk(2)
                latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
            return vae.decode(latents / 0.18215).sample

        times = w.time_it(generate, repeats, warmup=lambda: generate(2))
    label = "diffusers (torch eager)" if DTYPE == torch.float32 else "diffusers (torch eager bf16)"
    w.report(label, name, times, **extra)


def one_image(model: str, out: str, steps: str, prompt: str) -> None:
    """What a diffusers user's one-image script does (process.py times the whole process):
    load the folder, swap in DDIM, one 256x256 image at guidance 7.5, save the PNG.
    BENCH_DTYPE=bf16 loads it with `torch_dtype=torch.bfloat16`."""
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    dtype = torch.bfloat16 if os.environ.get("BENCH_DTYPE") == "bf16" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(
        model, safety_checker=None, requires_safety_checker=False, torch_dtype=dtype
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        image = pipe(
            prompt,
            height=256,
            width=256,
            num_inference_steps=int(steps),
            guidance_scale=7.5,
            generator=torch.Generator().manual_seed(0),
        ).images[0]
    image.save(out)


if __name__ == "__main__":
    main()
