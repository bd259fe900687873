"""Train the embedded model's control net: shapes drawn where a silhouette says.

    nice -n 10 python -m paddiff.plugins.embedded.train_control train --work /work/embedded-control
    python -m paddiff.plugins.embedded.train_control export --work /work/embedded-control
    python -m paddiff.plugins.embedded.evaluate_control

A ControlNetModel (Zhang et al. 2023) for whatever embedded model is installed: its encoder is
copied from the installed UNet (as diffusers' `ControlNetModel.from_unet` does), its zero
convolutions start at zero, and only it is trained; the UNet, VAE and text encoder stay frozen,
so the script can be re-run against a retrained embedded model. The data are the procedural
shapes of `dataset`, drawn at random positions and sizes over the whole picture; the control
image is the shape's silhouette (white on black), the captions those the embedded model was
trained with (`round1_captions.captions_for_model`). The loss is the embedded UNet's own (v
prediction on DDPM's linear schedule, `train.SCHEDULE`), with the control net's residuals added.

Centres near `HELD_OUT_CENTRES` are never drawn in training; `evaluate_control` generates there.
Every random draw of step k comes from `np.random.default_rng([SEED, 4, k])`, so a stopped and
resumed run sees the batches of one that never stopped; the newest checkpoint in --work is
resumed. The run stops at --steps or when the process has used --cpu-budget seconds of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import MODEL_DIR, dataset, round1_captions

SEED = 20261207
CONTROL_DIR = Path(__file__).resolve().parent / "control"
#: where evaluation puts shapes (pixels of the 64x64 picture); training keeps away from them
HELD_OUT_CENTRES = [(18, 18), (46, 18), (18, 46), (46, 46), (32, 17), (17, 32), (47, 32), (32, 47)]
HELD_OUT_MARGIN = 3.0
RADIUS_PIXELS = (9.0, 15.0)  # shape radius range (the dataset's are 12-14 and 19-23)
CONDITIONING_WIDTHS = [16, 32, 64]  # 64 px -> 16 latents: two stride-2 convolutions


def place(rng: np.random.Generator, held_out: bool = False) -> tuple[float, float, float]:
    """(cx, cy, r) in pixels: a held-out centre, or a training one away from all of them."""
    r = rng.uniform(*RADIUS_PIXELS)
    if held_out:
        cx, cy = HELD_OUT_CENTRES[rng.integers(len(HELD_OUT_CENTRES))]
        return float(cx), float(cy), r
    while True:
        cx, cy = rng.uniform(r, dataset.IMAGE_SIZE - r, size=2)
        near = [max(abs(cx - x), abs(cy - y)) for x, y in HELD_OUT_CENTRES]
        if min(near) > HELD_OUT_MARGIN:
            return float(cx), float(cy), r


def render_at(attrs, cx: float, cy: float, r: float) -> tuple[np.ndarray, np.ndarray]:
    """(picture, silhouette): uint8 (64, 64, 3) each, the shape drawn at (cx, cy) radius r."""
    from PIL import Image, ImageDraw

    s = dataset.SUPERSAMPLE
    big = dataset.IMAGE_SIZE * s
    fg, bg = dataset.PALETTE[attrs.fg], dataset.PALETTE[attrs.bg]
    canvas = Image.new("RGB", (big, big), bg)
    dataset._draw_shape(ImageDraw.Draw(canvas), attrs.shape, cx * s, cy * s, r * s, fg, bg)
    mask = Image.new("RGB", (big, big), (0, 0, 0))
    # the ring's hole is drawn in the background colour: black here
    dataset._draw_shape(
        ImageDraw.Draw(mask), attrs.shape, cx * s, cy * s, r * s, (255, 255, 255), (0, 0, 0)
    )
    size = (dataset.IMAGE_SIZE, dataset.IMAGE_SIZE)
    picture = np.asarray(canvas.resize(size, Image.Resampling.BOX))
    silhouette = np.asarray(mask.resize(size, Image.Resampling.BOX))
    return picture, silhouette


def example(rng: np.random.Generator, held_out: bool = False):
    """(attributes, picture, silhouette) with a training (or held-out) placement."""
    attrs = dataset.sample_attributes(rng)
    cx, cy, r = place(rng, held_out)
    size = "small" if r < 12.5 else "big"
    attrs = dataset.Attributes(attrs.shape, attrs.fg, attrs.bg, size)
    return (attrs, *render_at(attrs, cx, cy, r))


def control_from_unet(unet_model):
    """A ControlNetModel whose encoder is a copy of the UNet's; zero convolutions at zero."""
    import paddle
    from paddiff.plugins.controlnets.controlnet import ENCODER_FIELDS, ControlNetModel

    config = {k: unet_model.config[k] for k in ENCODER_FIELDS}
    config["conditioning_embedding_out_channels"] = CONDITIONING_WIDTHS
    paddle.seed(SEED)
    control = ControlNetModel(config)
    unet_state = unet_model.net.state_dict()
    for key, param in control.net.state_dict().items():
        if key in unet_state:
            param.set_value(unet_state[key])
        elif key.startswith(("controlnet_down_blocks", "controlnet_mid_block")) or (
            key.startswith("controlnet_cond_embedding.conv_out")
        ):
            param.set_value(paddle.zeros_like(param))
    return control


def alphas_cumprod() -> np.ndarray:
    from paddiff.plugins.embedded.train import training_alphas_cumprod

    return training_alphas_cumprod()


def train(args) -> None:
    import paddiff
    import paddle

    paddle.base.core.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pipe = paddiff.load_pipeline(args.model, execution="dynamic")
    unet, vae, text = pipe.denoiser, pipe.vae, pipe.text_encoder
    for p in unet.net.parameters():
        p.stop_gradient = True
    prediction = unet.prediction_type
    control = control_from_unet(unet)
    net = control.net
    net.train()
    optimizer = paddle.optimizer.AdamW(
        args.lr,
        parameters=net.parameters(),
        weight_decay=0.0,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0),
    )
    step = 0
    checkpoint = work / "checkpoint.pdparams"
    if checkpoint.is_file():
        saved = paddle.load(str(checkpoint))
        net.set_state_dict(saved["net"])
        optimizer.set_state_dict(saved["optimizer"])
        step = int(saved["step"])
        print(f"resumed at step {step}")
    # the captions the base model was trained with: it misreads others, and the control net
    # then learns to fight it (round1_captions says how much)
    caption = {"grammar": dataset.random_caption, "round1": round1_captions.random_caption}[
        round1_captions.captions_for_model(args.model)
    ]
    a_bar = alphas_cumprod()
    scaling = np.float32(vae.scaling_factor)
    cpu_start = time.process_time() - float(_read_json(work / "cpu.json").get("cpu_s", 0.0))
    losses = []
    while step < args.steps:
        rng = np.random.default_rng([SEED, 4, step])
        batch = [example(rng) for _ in range(args.batch)]
        pictures = np.stack([b[1] for b in batch]).astype(np.float32) / 127.5 - 1.0
        silhouettes = np.stack([b[2] for b in batch]).astype(np.float32) / 255.0
        captions = ["" if rng.random() < 0.1 else caption(b[0], rng) for b in batch]
        with paddle.no_grad():
            x0 = np.asarray(vae.encode(pictures.transpose(0, 3, 1, 2)), np.float32) * scaling
            context = paddle.to_tensor(np.asarray(text.encode(captions), np.float32))
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        t = rng.integers(0, len(a_bar), size=args.batch)
        a = a_bar[t].astype(np.float32)[:, None, None, None]
        xt = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
        target = noise if prediction == "epsilon" else np.sqrt(a) * noise - np.sqrt(1 - a) * x0
        xt_t, t_t = paddle.to_tensor(xt), paddle.to_tensor(t.astype(np.float32))
        control_image = paddle.to_tensor(np.ascontiguousarray(silhouettes.transpose(0, 3, 1, 2)))
        *downs, mid = net(xt_t, t_t, context, control_image)
        predicted = unet.net.run(xt_t, t_t, context, down_residuals=downs, mid_residual=mid)
        loss = ((predicted - paddle.to_tensor(target)) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        step += 1
        losses.append(float(loss))
        cpu = time.process_time() - cpu_start
        if step % 25 == 0:
            record = {"step": step, "loss": round(float(np.mean(losses)), 5), "cpu_s": round(cpu)}
            with open(work / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            losses = []
        if step % args.checkpoint_every == 0 or step >= args.steps or cpu > args.cpu_budget:
            state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            paddle.save(state, str(checkpoint) + ".tmp")
            os.replace(str(checkpoint) + ".tmp", checkpoint)
            (work / "cpu.json").write_text(json.dumps({"cpu_s": cpu, "step": step}))
        if cpu > args.cpu_budget:
            print(f"CPU budget reached at step {step} ({cpu:.0f} s)")
            break


def export(args) -> None:
    import paddiff
    import paddle

    pipe = paddiff.load_pipeline(args.model, execution="dynamic")
    control = control_from_unet(pipe.denoiser)
    saved = paddle.load(str(Path(args.work) / "checkpoint.pdparams"))
    control.net.set_state_dict(saved["net"])
    control.save_pretrained(args.output)
    print(f"wrote {args.output} (step {saved['step']})")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paddiff.plugins.embedded.train_control")
    parser.add_argument("stage", choices=["train", "export"])
    parser.add_argument("--work", default="/work/embedded-control")
    parser.add_argument("--model", default=str(MODEL_DIR), help="the embedded model folder")
    parser.add_argument("--output", default=str(CONTROL_DIR))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument(
        "--cpu-budget", type=float, default=3300.0, help="CPU seconds (all threads)"
    )
    args = parser.parse_args(argv)
    {"train": train, "export": export}[args.stage](args)


if __name__ == "__main__":
    main()
