"""Train the embedded model from scratch on the procedural dataset, in four stages.

    python -m paddiff.plugins.embedded.train vae     --work /work/embedded-train
    python -m paddiff.plugins.embedded.train decoder --work /work/embedded-train
    python -m paddiff.plugins.embedded.train unet    --work /work/embedded-train
    python -m paddiff.plugins.embedded.train export  --work /work/embedded-train

The networks are paddiff's own plugin classes (AutoencoderKL, UNet2DConditionModel, BertModel),
trained through their `.net` Paddle layers, so the exported folder is loaded by the same loader and
pipeline as any Stable Diffusion model. Stage 1 (`vae`) fits a small AutoencoderKL
(64x64x3 -> 16x16x4) with a reconstruction loss and a small KL term. Stage 2 (`decoder`, optional)
continues the decoder alone on the frozen encoder's latents, so images get sharper without
changing the latent space the UNet learns on. Stage 3 (`unet`) encodes a fixed set of renderings
once, then trains a small UNet2DConditionModel and a small BERT text encoder jointly with DDPM's
denoising loss (Ho et al. 2020) on its linear beta schedule, with the v parametrisation of the
target (Salimans & Ho 2022, as SD 2.x uses; `--prediction-type epsilon` gives eq. 14 of DDPM
exactly); 10% of captions are replaced by "" so classifier-free guidance has an unconditional
model to contrast with. A caption term (`caption_loss`) keeps shape, colour and background
readable in the text features.

Why v: with noise prediction the loss hardly depends on the prompt. At large t the target is
almost the noise itself whatever the caption, and at small t the image is visible in x_t; the
colours and the shape the caption names matter only in a narrow middle band. A run with epsilon
targets still ignored its prompts after 2,500 steps (the loss with and without the caption
differed by 1-2%, all images wrong); v = sqrt(a) eps - sqrt(1 - a) x_0 tends to -x_0 at large t,
where only the caption can say what x_0 is, and the same data gave correct backgrounds after
1,000 steps. Stage 4 (`export`) writes the model folder in diffusers layout (model_index.json,
unet/, vae/ from the decoder stage if it ran, text_encoder/ and tokenizer/ in Taiyi's BERT layout,
scheduler/).

Every random draw of step k comes from `np.random.default_rng([seed, stream, k])`, so a run that is
stopped and resumed from a checkpoint sees the same batches as one that never stopped. The streams
are 1 (`vae`), 2 (`unet`) and 3 (`decoder`): numbered in the order the stages were written, and
kept so that retraining reproduces the shipped weights. Running the same command again resumes
from the newest checkpoint in the work folder.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from paddiff.plugins.embedded import MODEL_DIR, dataset

SEED = 20261126
TEXT_LENGTH = 32  # tokens per prompt, [CLS] and [SEP] included; captions use at most 20

VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [8, 16, 32],  # flat-coloured shapes need little; full-res convs are dear
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    # Several channels per group: with one channel per group (instance norm) a flat image
    # normalises to zero, and the decoder's last norm would erase the absolute colour.
    "norm_num_groups": 2,
    "sample_size": dataset.IMAGE_SIZE,
    "scaling_factor": 1.0,  # replaced by 1 / std of the training latents at the end of stage 1
}
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": dataset.IMAGE_SIZE // 4,
    "in_channels": 4,
    "out_channels": 4,
    # No attention at the 16x16 level: there it made a training step 2.5 times as dear.
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "attention_head_dim": 8,  # diffusers reads this as the number of heads
    "cross_attention_dim": 128,
    "norm_num_groups": 8,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "center_input_sample": False,
    "downsample_padding": 1,
    "use_linear_projection": False,
}
BERT_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": None,  # set from the vocabulary the script builds
    "hidden_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": TEXT_LENGTH,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}
# DDPM's linear betas (Ho et al. 2020), not SD's scaled-linear ones: at t = 999 SD's schedule
# keeps sqrt(alpha_bar) = 0.068 of the signal, and averaged over a 16x16 latent that leaks the
# background colour into pure noise; the model then takes the colour from the seed instead of the
# prompt (seen in a first run). Linear betas keep 0.0064 of it.
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02}
SCHEDULER_CONFIG = {
    "_class_name": "DPMSolverMultistepScheduler",
    "beta_schedule": "linear",
    **SCHEDULE,
    "prediction_type": "epsilon",
    "solver_order": 2,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
    "lower_order_final": True,
    "timestep_spacing": "linspace",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def setup_paddle(threads: int):
    import paddle

    paddle.base.core.set_num_threads(threads)  # Paddle's CPU kernels default to one thread
    paddle.set_device("cpu")
    return paddle


# -- vocabulary and tokenizer ----------------------------------------------------------------


def build_vocabulary() -> list[str]:
    """Specials, every Chinese character and English word the captions use, and, so that words
    outside the captions still tokenize to something, single letters and their ## pieces."""
    chars, words = dataset.caption_vocabulary()
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    pieces = ["##" + x for x in letters + digits]
    vocab = SPECIAL_TOKENS + chars + words
    return vocab + [x for x in letters + digits + pieces if x not in vocab]


def write_tokenizer(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(build_vocabulary()) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "model_max_length": TEXT_LENGTH,
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    specials = {k: config[k] for k in ("pad_token", "unk_token", "cls_token", "sep_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def make_text_encoder(tokenizer_folder: Path):
    """paddiff's BertModel text encoder (random weights) with the built vocabulary: training
    tokenizes captions exactly as the pipeline will tokenize prompts."""
    from paddiff.plugins.text_encoders.bert import BertModel
    from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_folder(tokenizer_folder)
    return BertModel({**BERT_CONFIG, "vocab_size": len(tokenizer.tokens)}, tokenizer, TEXT_LENGTH)


def init_text_encoder(net, seed: int) -> None:
    """Start the BERT as a near-identity map from words to features: unit-variance word
    embeddings, small position embeddings, no token-type offset, and Linear weights N(0, 0.02)
    (BERT's own init) so attention and MLP outputs begin small beside the residual path.

    Paddle's default init instead gives position and token-type embeddings as large as the word
    embeddings; the last hidden states then hardly depend on the words (measured: mean change
    7% between unrelated captions), the UNet learns to ignore them, and joint training drives
    them to a constant (0.4% after 1,000 steps: an unconditional model).
    """
    from paddle import nn

    rng = np.random.default_rng(seed)
    scales = {
        "embeddings.word_embeddings.weight": 1.0,
        "embeddings.position_embeddings.weight": 0.1,
        "embeddings.token_type_embeddings.weight": 0.0,
    }
    linear = {name for name, layer in net.named_sublayers() if isinstance(layer, nn.Linear)}
    for name, param in net.named_parameters():
        layer = name.rpartition(".")[0]
        if name in scales:
            std = scales[name]
        elif layer in linear:
            std = 0.02 if name.endswith("weight") else 0.0
        else:
            continue  # LayerNorm: ones and zeros already
        param.set_value(rng.normal(0.0, std, param.shape).astype(np.float32))


def text_states(paddle, encoder, captions: list[str]):
    """The conditioning for captions, differentiable (the plugin's `encode` runs without grad):
    the last hidden state, with no padding mask, as the pipeline encodes prompts."""
    from paddiff.plugins.text_encoders.bert import attention_bias

    ids = encoder.tokenize(captions)
    positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
    bias = attention_bias(None, ids)
    return encoder.net(*(paddle.to_tensor(np.ascontiguousarray(a)) for a in (ids, positions, bias)))


# -- checkpoints -----------------------------------------------------------------------------


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def save_checkpoint(paddle, folder: Path, step: int, layers: dict, optimizer, keep: int = 3):
    target = folder / f"step-{step:06d}"
    partial = folder / f".partial-{step:06d}"
    partial.mkdir(parents=True, exist_ok=True)
    for name, layer in layers.items():
        paddle.save(layer.state_dict(), str(partial / f"{name}.pdparams"))
    state = optimizer.state_dict()
    names = parameter_names(layers)
    paddle.save(
        {portable_key(k, names): v for k, v in state.items()}, str(partial / "optimizer.pdopt")
    )
    (partial / "step.json").write_text(json.dumps({"step": step}))
    partial.rename(target)  # a checkpoint appears whole or not at all
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old)


def load_checkpoint(paddle, checkpoint: Path, layers: dict, optimizer) -> int:
    for name, layer in layers.items():
        layer.set_state_dict(paddle.load(str(checkpoint / f"{name}.pdparams")))
    saved = paddle.load(str(checkpoint / "optimizer.pdopt"))
    back = {portable: name for name, portable in parameter_names(layers).items()}
    optimizer.set_state_dict({local_key(k, back): v for k, v in saved.items()})
    return json.loads((checkpoint / "step.json").read_text())["step"]


def parameter_names(layers: dict) -> dict[str, str]:
    """Paddle's parameter names ("conv2d_258.w_0") -> names that do not depend on how many layers
    the process made before ("unet/conv_in.weight"). The optimizer's state is keyed by the former,
    so a checkpoint saved with them loads only in a process that built the same layers first."""
    return {
        param.name: f"{layer_name}/{key}"
        for layer_name, layer in layers.items()
        for key, param in layer.named_parameters()
    }


def portable_key(key: str, names: dict[str, str]) -> str:
    """ "conv2d_258.w_0_moment1_0" -> "unet/conv_in.weight_moment1_0"; other keys unchanged."""
    for cut in (i for i, c in enumerate(key) if c == "_"):
        if key[:cut] in names:
            return names[key[:cut]] + key[cut:]
    return key


def local_key(key: str, back: dict[str, str]) -> str:
    """The inverse of `portable_key` in this process (checkpoints from before it pass through)."""
    for cut in (i for i, c in enumerate(key) if c == "_"):
        if key[:cut] in back:
            return back[key[:cut]] + key[cut:]
    return key


def log(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


# -- stage 1: the VAE ------------------------------------------------------------------------


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [-1, 1]."""
    return (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def train_vae(args, decoder_only: bool = False) -> None:
    """Stage 1, or with decoder_only its continuation: the encoder (and so the latents the UNet
    learns on) is frozen at the newest `vae` checkpoint, and only the decoder keeps learning."""
    paddle = setup_paddle(args.threads)
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    work = Path(args.work)
    folder = work / ("decoder" if decoder_only else "vae")
    folder.mkdir(parents=True, exist_ok=True)
    paddle.seed(SEED)
    vae = AutoencoderKL(VAE_CONFIG).net
    vae.train()
    if decoder_only:
        vae.set_state_dict(load_vae(paddle, work, "vae")[0].net.state_dict())
        trained = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    else:
        trained = vae.parameters()
    schedule = paddle.optimizer.lr.LinearWarmup(args.lr, 50, 0.0, args.lr)
    optimizer = paddle.optimizer.Adam(schedule, parameters=trained)
    step = 0
    checkpoint = latest_checkpoint(folder)
    if checkpoint:
        step = load_checkpoint(paddle, checkpoint, {"vae": vae}, optimizer)
        print(f"resumed from {checkpoint}")
    started = time.time()
    while step < args.steps:
        rng = np.random.default_rng([SEED, 3 if decoder_only else 1, step])
        index = rng.integers(0, 10**9, size=args.batch)
        images = np.stack([dataset.example(SEED + 1, int(i), "train")[1] for i in index])
        x = paddle.to_tensor(to_model_range(images))
        if decoder_only:
            with paddle.no_grad():
                mean, logvar = vae.moments(x)
        else:
            mean, logvar = vae.moments(x)
        noise = paddle.to_tensor(rng.standard_normal(mean.shape).astype(np.float32))
        z = mean + paddle.exp(0.5 * logvar) * noise
        recon = vae.decode(z)
        # L1 keeps flat colours exact; the KL weight is small: it only keeps latents tame.
        rec_loss = paddle.abs(recon - x).mean()
        kl = 0.5 * (mean**2 + paddle.exp(logvar) - 1.0 - logvar).mean()
        loss = rec_loss + args.kl_weight * kl
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        step += 1
        if step % 50 == 0 or step == args.steps:
            log(
                folder / "log.jsonl",
                {
                    "stage": folder.name,
                    "step": step,
                    "l1": round(float(rec_loss), 5),
                    "kl": round(float(kl), 4),
                    "elapsed_s": round(time.time() - started, 1),
                },
            )
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(paddle, folder, step, {"vae": vae}, optimizer)


def load_vae(paddle, work: Path, part: str = "vae", checkpoint: Path | None = None):
    """The AutoencoderKL plugin with stage-1 weights (part "vae") or with the decoder-only
    continuation's (part "decoder"), from `checkpoint` or the newest, and that checkpoint."""
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    checkpoint = checkpoint or latest_checkpoint(work / part)
    if checkpoint is None:
        raise FileNotFoundError(f"no VAE checkpoint under {work / part}; run the {part} stage")
    vae = AutoencoderKL(VAE_CONFIG)
    vae.net.set_state_dict(paddle.load(str(checkpoint / "vae.pdparams")))
    vae.net.eval()
    return vae, checkpoint


def encode_training_set(paddle, work: Path, count: int) -> tuple[list, np.ndarray, float]:
    """Latent means of `count` training renderings, cached in the work folder, and the scaling
    factor 1 / std that brings them to unit variance (as SD's 0.18215 does for its VAE).

    The first call pins the VAE checkpoint in `unet/vae-checkpoint.txt`: the unet and export
    stages keep using that encoder even if the vae stage later writes newer checkpoints."""
    pin = work / "unet" / "vae-checkpoint.txt"
    if pin.exists():
        vae, checkpoint = load_vae(paddle, work, checkpoint=work / "vae" / pin.read_text().strip())
    else:
        vae, checkpoint = load_vae(paddle, work)
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.write_text(checkpoint.name)
    cache = work / f"latents-{checkpoint.name}-{count}-{dataset_digest()}.npz"
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        latents = data["latents"]
    else:
        chunks = []
        for start in range(0, count, 256):
            images = np.stack(
                [dataset.example(SEED + 2, i)[1] for i in range(start, min(count, start + 256))]
            )
            chunks.append(vae.encode(to_model_range(images)))  # the posterior mean
        latents = np.concatenate(chunks)
        np.savez(cache, latents=latents)
    attrs = [dataset.example(SEED + 2, i)[0] for i in range(count)]
    return attrs, latents, float(1.0 / latents.std())


def dataset_digest() -> str:
    """A short hash of a few renderings and captions: a change to the renderer or the captions
    gives the latent cache a new name instead of silently reusing stale latents."""
    digest = hashlib.sha256()
    for index in range(8):
        attrs, image = dataset.example(SEED + 2, index)
        rng = np.random.default_rng(index)
        digest.update(image.tobytes() + dataset.random_caption(attrs, rng).encode())
    return digest.hexdigest()[:10]


# -- stage 3: UNet and text encoder ----------------------------------------------------------


def training_alphas_cumprod() -> np.ndarray:
    """alpha_bar_t for the linear beta schedule, as the scheduler config describes it."""
    betas = np.linspace(
        SCHEDULE["beta_start"], SCHEDULE["beta_end"], SCHEDULE["num_train_timesteps"]
    )
    return np.cumprod(1.0 - betas)


def train_unet(args) -> None:
    paddle = setup_paddle(args.threads)
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    work = Path(args.work)
    folder = work / "unet"
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(work / "tokenizer")
    objective = pin_objective(folder, args)
    prediction = objective["prediction_type"]
    if args.init_from and not latest_checkpoint(folder):
        seed_vae_from_model(paddle, work, Path(args.init_from))
    attrs, latents, scaling = encode_training_set(paddle, work, args.images)
    latents = latents * scaling
    alphas_cumprod = training_alphas_cumprod()

    paddle.seed(SEED + 3)
    unet = UNet2DConditionModel(objective["unet_config"]).net
    text_encoder = make_text_encoder(work / "tokenizer")
    bert = text_encoder.net
    init_text_encoder(bert, SEED + 4)
    if args.init_from and not latest_checkpoint(folder):
        continue_from_model(paddle, Path(args.init_from), unet, text_encoder)
    unet.train()
    bert.train()
    unet_ema, bert_ema = copy.deepcopy(unet), copy.deepcopy(bert)
    # Training-only heads that read shape, colour and background back from the caption's
    # features (not exported; see caption_loss).
    heads = paddle.nn.Linear(BERT_CONFIG["hidden_size"], len(ATTRIBUTE_CLASSES))
    layers = {
        "unet": unet,
        "text_encoder": bert,
        "unet_ema": unet_ema,
        "text_encoder_ema": bert_ema,
        "caption_heads": heads,
    }
    pairs = list(zip(parameters_of(unet, bert), parameters_of(unet_ema, bert_ema), strict=True))
    parameters = unet.parameters() + bert.parameters() + heads.parameters()
    # A constant learning rate after warm-up, plus an exponential moving average of the weights
    # (which is what gets exported): the run can stop at any checkpoint and still give its best.
    schedule = paddle.optimizer.lr.LinearWarmup(args.lr, 200, 0.0, args.lr)
    optimizer = paddle.optimizer.AdamW(
        schedule,
        parameters=parameters,
        weight_decay=0.01,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0),
    )
    step = 0
    checkpoint = latest_checkpoint(folder)
    if checkpoint:
        step = load_checkpoint(paddle, checkpoint, layers, optimizer)  # lr schedule included
        print(f"resumed from {checkpoint}")
    started, losses = time.time(), []
    while step < args.steps:
        rng = np.random.default_rng([SEED, 2, step])
        index = rng.integers(0, len(latents), size=args.batch)
        dropped = rng.random(args.batch) < args.caption_dropout
        captions = [
            "" if drop else dataset.random_caption(attrs[i], rng)
            for i, drop in zip(index, dropped, strict=True)
        ]
        x0 = latents[index]
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        t = rng.integers(0, SCHEDULE["num_train_timesteps"], size=args.batch)
        a = alphas_cumprod[t].astype(np.float32)[:, None, None, None]
        xt = np.sqrt(a) * x0 + np.sqrt(1.0 - a) * noise  # q(x_t | x_0)
        target = noise if prediction == "epsilon" else np.sqrt(a) * noise - np.sqrt(1.0 - a) * x0
        context = text_states(paddle, text_encoder, captions)
        predicted = unet(paddle.to_tensor(xt), paddle.to_tensor(t.astype(np.float32)), context)
        weights = paddle.to_tensor(loss_weights(a[:, 0, 0, 0], objective))
        errors = ((predicted - paddle.to_tensor(target.astype(np.float32))) ** 2).mean(
            axis=[1, 2, 3]
        )
        loss = (weights * errors).mean()
        if objective.get("caption_loss_weight"):
            kept = [
                (attrs[i], j)
                for j, (i, drop) in enumerate(zip(index, dropped, strict=True))
                if not drop
            ]
            loss = loss + objective.get("caption_loss_weight") * caption_loss(
                paddle, heads, context, text_encoder.tokenize(captions), kept
            )
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        step += 1
        update_ema(paddle, pairs, decay=min(args.ema, (1 + step) / (10 + step)))
        losses.append(float(loss))
        # How much the conditioning differs between captions (relative spread over the batch):
        # near zero means the text encoder has collapsed and the model ignores prompts.
        spread = float(context[:, :12].std(axis=0).mean() / (context.abs().mean() + 1e-8))
        if step % 50 == 0 or step == args.steps:
            log(
                folder / "log.jsonl",
                {
                    "stage": "unet",
                    "step": step,
                    "loss": round(float(np.mean(losses)), 5),
                    "text_spread": round(spread, 4),
                    "lr": round(float(schedule.get_lr()), 7),
                    "elapsed_s": round(time.time() - started, 1),
                },
            )
            losses = []
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(paddle, folder, step, layers, optimizer)


def seed_vae_from_model(paddle, work: Path, model: Path) -> None:
    """A `vae` checkpoint holding an exported model's VAE, for continuing that model's training
    when its work folder is gone: its encoder gives the latents the UNet learnt on (the decoder
    stage never changes the encoder), and the export writes its decoder back unchanged."""
    if latest_checkpoint(work / "vae"):
        return
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model / "vae")
    target = work / "vae" / "step-000000"
    target.mkdir(parents=True)
    paddle.save(vae.net.state_dict(), str(target / "vae.pdparams"))
    (target / "step.json").write_text(json.dumps({"step": 0, "from": str(model)}))


def continue_from_model(paddle, model: Path, unet, text_encoder) -> None:
    """Start the UNet and text encoder from an exported model's weights. The vocabulary may
    have grown since (new phrasings bring new words): a word the model knew keeps its learnt
    embedding row, a new word keeps the fresh initialisation it already has."""
    import paddiff

    shipped = paddiff.load_pipeline(str(model))
    unet.set_state_dict(shipped.denoiser.net.state_dict())
    old_row = {token: i for i, token in enumerate(shipped.text_encoder.tokenizer.tokens)}
    old = {k: v.numpy() for k, v in shipped.text_encoder.net.state_dict().items()}
    new = {k: v.numpy() for k, v in text_encoder.net.state_dict().items()}
    key = "embeddings.word_embeddings.weight"
    for name in new:
        if name == key:
            for row, token in enumerate(text_encoder.tokenizer.tokens):
                if token in old_row:
                    new[name][row] = old[name][old_row[token]]
        else:
            new[name] = old[name]
    text_encoder.net.set_state_dict({k: paddle.to_tensor(v) for k, v in new.items()})
    kept = sum(t in old_row for t in text_encoder.tokenizer.tokens)
    print(f"continuing from {model}: {kept} of {len(text_encoder.tokenizer.tokens)} tokens known")


def pin_objective(folder: Path, args=None) -> dict:
    """The run's training objective and UNet configuration, fixed by its first start in
    `unet/objective.json`: a resumed run must keep its target, weighting and architecture, and
    the export writes the prediction type into the scheduler config and the UNet config it was
    trained with. With `args` None (the export), the pinned objective is only read."""
    pin = folder / "objective.json"
    if pin.exists():
        pinned = json.loads(pin.read_text())
    elif latest_checkpoint(folder):
        raise SystemExit(f"{folder} has checkpoints but no objective.json; use a new --work folder")
    elif args is None:
        raise FileNotFoundError(f"no training objective pinned in {folder}; run the unet stage")
    else:
        pinned = {
            "prediction_type": args.prediction_type or "v_prediction",
            "min_snr_gamma": args.min_snr_gamma,
            "caption_loss_weight": 1.0
            if args.caption_loss_weight is None
            else args.caption_loss_weight,
            "unet_config": UNET_CONFIG,
        }
        folder.mkdir(parents=True, exist_ok=True)
        pin.write_text(json.dumps(pinned) + "\n")
    if args is not None:
        asked = {
            "prediction_type": args.prediction_type,
            "min_snr_gamma": args.min_snr_gamma,
            "caption_loss_weight": args.caption_loss_weight,
        }
        clash = {k: v for k, v in asked.items() if v is not None and v != pinned[k]}
        if clash:
            raise SystemExit(
                f"{folder} was trained with {pinned}; resuming with {clash} would mix two "
                "objectives. Use a new --work folder."
            )
    return pinned


#: What the caption heads predict, in logit order: the shape, then the shape's colour, then the
#: background's.
ATTRIBUTE_CLASSES = (
    [("shape", s) for s in dataset.SHAPES]
    + [("fg", c) for c in dataset.COLOURS]
    + [("bg", c) for c in dataset.COLOURS]
)


def caption_loss(paddle, heads, context, ids: np.ndarray, kept: list):
    """Cross-entropy of shape, colour and background predicted from each caption's mean token
    feature (padding excluded), for the captions in `kept` ((attributes, batch row) pairs).

    Why: trained by the denoising loss alone, the text encoder let go of whatever the UNet had
    not yet learned to use. After 2,000 steps the features of "a red circle ..." and "a red star
    ..." differed by 3% of those of two backgrounds, and the images had colours but no shapes.
    This term keeps every attribute readable in the features, in both languages alike."""
    import paddle.nn.functional as F

    if not kept:
        return paddle.zeros([])
    rows = [j for _, j in kept]
    mask = paddle.to_tensor((ids[rows] != 0).astype(np.float32))[:, :, None]
    pooled = (context[rows] * mask).sum(axis=1) / mask.sum(axis=1)
    logits = heads(pooled)
    total = paddle.zeros([])
    start = 0
    for kind, names in (
        ("shape", dataset.SHAPES),
        ("fg", dataset.COLOURS),
        ("bg", dataset.COLOURS),
    ):
        labels = np.array([names.index(getattr(a, kind)) for a, _ in kept], dtype=np.int64)
        part = logits[:, start : start + len(names)]
        total = total + F.cross_entropy(part, paddle.to_tensor(labels[:, None])).mean()
        start += len(names)
    return total


def loss_weights(alpha_bar: np.ndarray, objective: dict) -> np.ndarray:
    """Per-example loss weights. Min-SNR-gamma (Hang et al. 2023) caps the weight of nearly
    clean examples, whose easy denoising otherwise dominates the gradient; for a v target the
    weight is min(SNR, gamma) / (SNR + 1), which is 1 wherever SNR <= gamma."""
    gamma = objective["min_snr_gamma"]
    if gamma is None:
        return np.ones_like(alpha_bar, dtype=np.float32)
    snr = alpha_bar / (1.0 - alpha_bar)
    scale = snr + 1.0 if objective["prediction_type"] == "v_prediction" else snr
    return (np.minimum(snr, gamma) / scale).astype(np.float32)


def parameters_of(*layers):
    return [p for layer in layers for p in layer.parameters()]


def update_ema(paddle, pairs, decay: float) -> None:
    with paddle.no_grad():
        for param, average in pairs:
            average.set_value(decay * average + (1.0 - decay) * param)


# -- export ----------------------------------------------------------------------------------


def export(args) -> Path:
    """Write the newest checkpoints as a diffusers-layout model folder."""
    paddle = setup_paddle(args.threads)
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel
    from paddiff.plugins.vaes.autoencoder_kl import AutoencoderKL

    work, target = Path(args.work), Path(args.model)
    _, _, scaling = encode_training_set(paddle, work, args.images)
    # The decoder-only continuation, when it has run, has the better decoder (same encoder).
    part = "decoder" if latest_checkpoint(work / "decoder") else "vae"
    trained_vae, vae_checkpoint = load_vae(paddle, work, part)
    vae = AutoencoderKL({**VAE_CONFIG, "scaling_factor": round(scaling, 5)})
    vae.net.set_state_dict(trained_vae.net.state_dict())
    checkpoint = latest_checkpoint(work / "unet")
    if checkpoint is None:
        raise FileNotFoundError(f"no UNet checkpoint under {work / 'unet'}")
    unet = UNet2DConditionModel(pin_objective(work / "unet")["unet_config"])
    unet.net.set_state_dict(paddle.load(str(checkpoint / "unet_ema.pdparams")))
    write_tokenizer(work / "tokenizer")
    text_encoder = make_text_encoder(work / "tokenizer")
    text_encoder.net.set_state_dict(paddle.load(str(checkpoint / "text_encoder_ema.pdparams")))

    if target.exists():
        shutil.rmtree(target)
    # Each plugin writes its own diffusers / transformers layout (config.json + safetensors).
    unet.save_pretrained(target / "unet")
    vae.save_pretrained(target / "vae")
    text_encoder.save_pretrained(target / "text_encoder")
    write_tokenizer(target / "tokenizer")
    (target / "scheduler").mkdir()
    prediction = pin_objective(work / "unet")["prediction_type"]
    (target / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({**SCHEDULER_CONFIG, "prediction_type": prediction}, indent=2) + "\n"
    )
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_paddiff_embedded": {
            "unet_and_text_encoder": checkpoint.name,
            "vae": f"{part}/{vae_checkpoint.name}",
            "seed": SEED,
            "captions": "grammar",  # what its control net trains with (round1_captions)
        },
        "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", "BertTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (target / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    write_calibration_prompts(target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"exported {checkpoint} to {target} ({size / 1e6:.1f} MB)")
    return target


def write_calibration_prompts(target: Path) -> None:
    """The prompts `paddiff quantize` calibrates this model on by default (see
    `dataset.calibration_prompts`)."""
    from paddiff.quantize.calibration import MODEL_PROMPTS_FILE

    header = (
        "# paddiff quantize calibrates this model on these prompts unless given others: captions\n"
        "# of its training grammar (paddiff.plugins.embedded.dataset.calibration_prompts)\n"
    )
    lines = "\n".join(dataset.calibration_prompts())
    (target / MODEL_PROMPTS_FILE).write_text(header + lines + "\n", encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paddiff.plugins.embedded.train")
    parser.add_argument("stage", choices=["vae", "unet", "decoder", "export"])
    parser.add_argument("--work", default="/work/embedded-train", help="checkpoints and logs")
    parser.add_argument("--model", default=str(MODEL_DIR), help="export target folder")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--images", type=int, default=8000, help="renderings for the unet stage")
    parser.add_argument(
        "--prediction-type",
        choices=["epsilon", "v_prediction"],
        default=None,
        help="UNet target; new runs default to v_prediction, resumed runs keep theirs",
    )
    parser.add_argument(
        "--min-snr-gamma",
        type=float,
        default=None,
        help="weight the loss by Min-SNR-gamma (e.g. 5); new runs only",
    )
    parser.add_argument(
        "--caption-loss-weight",
        type=float,
        default=None,
        help="weight of the caption-attribute term (see caption_loss); new runs default to 1.0",
    )
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument(
        "--init-from",
        default=None,
        help="unet stage: start from this exported model folder (its VAE, UNet and text "
        "encoder; new vocabulary rows start fresh) instead of from scratch",
    )
    parser.add_argument("--ema", type=float, default=0.995, help="EMA decay of exported weights")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    args = parser.parse_args(argv)
    defaults = {
        "vae": (800, 8, 2e-3),
        "decoder": (1500, 8, 1e-3),
        "unet": (8000, 16, 6e-4),
        "export": (0, 0, 0),
    }
    steps, batch, lr = defaults[args.stage]
    args.steps = args.steps or steps
    args.batch = args.batch or batch
    args.lr = args.lr or lr
    stages = {
        "vae": train_vae,
        "decoder": lambda a: train_vae(a, decoder_only=True),
        "unet": train_unet,
        "export": export,
    }
    stages[args.stage](args)


if __name__ == "__main__":
    main()
