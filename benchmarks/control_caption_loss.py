"""Forward-only loss of the embedded control net with each kind of caption (round1_captions'
figures). The same pictures, silhouettes, noise and timesteps go through the frozen embedded
UNet plus the control net for each caption source; only the caption changes.

    python benchmarks/control_caption_loss.py [--control plugins/embedded/control] [--batches 8]

Sources: "round1" (the templates the round-1 model was trained with), "grammar" (any phrasing of
the round-2 grammar), "known-words" (grammar captions made only of words the model knows),
"empty", and "known-words, no control" (the residuals zeroed: what the control net adds).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", default=None, help="control net folder (default: shipped)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import paddiff
    import paddle
    from paddiff.plugins.controlnets.controlnet import ControlNetModel
    from paddiff.plugins.embedded import MODEL_DIR, dataset, lexicon, round1_captions
    from paddiff.plugins.embedded import train_control as tc

    paddle.base.core.set_num_threads(args.threads)
    pipe = paddiff.load_pipeline(execution="dynamic")
    unet, vae, text = pipe.denoiser, pipe.vae, pipe.text_encoder
    net = ControlNetModel.from_pretrained(args.control or str(tc.CONTROL_DIR)).net
    net.eval()
    known = lexicon.model_words(MODEL_DIR)

    def known_caption(attrs, rng):
        while True:
            caption = dataset.random_caption(attrs, rng)
            if not lexicon.unknown_words(caption, known):
                return caption

    a_bar = tc.alphas_cumprod()
    losses: dict[str, list[float]] = {}
    for k in range(args.batches):
        rng = np.random.default_rng([1, k])
        batch = [tc.example(rng) for _ in range(8)]
        pictures = np.stack([b[1] for b in batch]).astype(np.float32) / 127.5 - 1.0
        silhouettes = np.stack([b[2] for b in batch]).astype(np.float32) / 255.0
        with paddle.no_grad():
            x0 = np.asarray(vae.encode(pictures.transpose(0, 3, 1, 2)), np.float32)
        x0 *= np.float32(vae.scaling_factor)
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        t = rng.integers(0, len(a_bar), size=len(batch))
        a = a_bar[t].astype(np.float32)[:, None, None, None]
        xt = paddle.to_tensor(np.sqrt(a) * x0 + np.sqrt(1 - a) * noise)
        target = np.sqrt(a) * noise - np.sqrt(1 - a) * x0  # v prediction
        timesteps = paddle.to_tensor(t.astype(np.float32))
        control_image = paddle.to_tensor(np.ascontiguousarray(silhouettes.transpose(0, 3, 1, 2)))
        sources = {
            "round1": [round1_captions.random_caption(b[0], rng) for b in batch],
            "grammar": [dataset.random_caption(b[0], rng) for b in batch],
            "known-words": [known_caption(b[0], rng) for b in batch],
            "empty": [""] * len(batch),
        }
        sources["known-words, no control"] = sources["known-words"]
        for name, captions in sources.items():
            with paddle.no_grad():
                context = paddle.to_tensor(np.asarray(text.encode(captions), np.float32))
                *downs, mid = net(xt, timesteps, context, control_image)
                if name.endswith("no control"):
                    downs, mid = [d * 0 for d in downs], mid * 0
                v = unet.net.run(xt, timesteps, context, down_residuals=downs, mid_residual=mid)
            losses.setdefault(name, []).append(float(((v.numpy() - target) ** 2).mean()))
    print(f"mean v-prediction loss over {args.batches} batches of 8:")
    for name, values in losses.items():
        print(f"  {name:24s} {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
