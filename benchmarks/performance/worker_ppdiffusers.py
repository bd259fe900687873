"""Times the workloads with ppdiffusers on Paddle's dynamic graph. Run by run.py in its own venv."""

from __future__ import annotations

import sys

import paddle
import workloads as w
from ppdiffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from ppdiffusers.transformers import CLIPTextConfig, CLIPTextModel


def main() -> None:
    paddle.seed(0)
    for name in w.selected(sys.argv):
        run(name)


@paddle.no_grad()
def run(name: str) -> None:
    repeats = w.WORKLOADS[name][1]
    extra = {
        "versions": {
            "paddle": paddle.__version__,
            "ppdiffusers": __import__("ppdiffusers").__version__,
        }
    }
    if name.startswith("unet"):
        unet = UNet2DConditionModel(**w.UNET)
        unet.eval()
        x, t, ctx = (paddle.to_tensor(a) for a in w.unet_inputs(int(name[4:])))
        times = w.time_it(lambda: unet(x, t, ctx).sample.numpy(), repeats)
    elif name.startswith("vae"):
        vae = AutoencoderKL(**w.VAE)
        vae.eval()
        z = paddle.randn([1, 4, int(name[3:]) // 8, int(name[3:]) // 8])
        times = w.time_it(lambda: vae.decode(z).sample.numpy(), repeats)
    elif name == "text":
        text = CLIPTextModel(CLIPTextConfig(**w.CLIP_TEXT))
        text.eval()
        ids = paddle.to_tensor(w.token_ids())
        times = w.time_it(lambda: text(ids)[0].numpy(), repeats)
    else:  # e2e256
        unet = UNet2DConditionModel(**w.UNET)
        vae = AutoencoderKL(**w.VAE)
        text = CLIPTextModel(CLIPTextConfig(**w.CLIP_TEXT))
        for model in (unet, vae, text):
            model.eval()
        scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        ids = paddle.to_tensor(w.token_ids())

        def generate():
            ctx = text(ids)[0]
            scheduler.set_timesteps(20)
            latents = paddle.randn([1, 4, 32, 32])
            for t in scheduler.timesteps:
                out = unet(paddle.concat([latents] * 2), t, ctx).sample
                uncond, cond = out.chunk(2)
                latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
            return vae.decode(latents / 0.18215).sample.numpy()

        times = w.time_it(generate, repeats)
    w.report("ppdiffusers (Paddle dynamic graph)", name, times, **extra)


if __name__ == "__main__":
    main()
