"""The LoRA training loop, single process or data-parallel (`paddle.distributed.launch`)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from paddiff.training import batches, data, lora_layers, new_tokens, objective, resume
from paddiff.training.distributed import Distributed
from paddiff.training.memory import autocast, check_bf16_available, checkpoint_blocks

SCHEDULES = ("constant", "cosine")
# Random streams: every draw of micro-batch m is rng([seed, stream, m]).
NOISE_STREAM = 3


@dataclass
class LoraTraining:
    """What a run does. Fields marked (fingerprint) must match to resume a run."""

    data: str
    output: str
    # kohya's reg_data_dir / prior_loss_weight: regularisation images (DreamBooth's prior
    # preservation) mixed into the batches, their loss scaled by prior_loss_weight
    reg_data: str | None = None
    prior_loss_weight: float = 1.0
    model: str | None = None
    rank: int = 4
    alpha: float | None = None  # None: alpha = rank (scale 1)
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    steps: int | None = None  # None: from epochs
    epochs: int | None = None
    batch_size: int = 1  # per process; the global batch is batch_size * processes
    gradient_accumulation: int = 1
    resolution: int | None = None  # None: the model's own (UNet sample_size * VAE factor)
    buckets: bool = False  # aspect-ratio buckets instead of a square centre crop
    train_text_encoder: bool = False
    text_encoder_lr: float | None = None
    # pivotal tuning: "TOKEN" or "TOKEN=INIT" new tokens whose rows train with the LoRA
    new_tokens: list[str] = field(default_factory=list)
    token_lr: float | None = None  # None: --learning-rate
    targets: str = "attention"
    seed: int = 0
    caption: str | None = None
    caption_column: str = "text"
    save_every: int | None = None
    resume_from: str | None = None
    sample_prompts: list[str] = field(default_factory=list)
    sample_every: int | None = None
    sample_steps: int = 20
    output_format: str = "kohya"
    gradient_checkpointing: bool = False
    bf16: bool = False
    weight_decay: float = 1e-2
    progress: bool = True
    log: str | None = None  # a JSON-lines file: one line per step (rank 0 writes it)

    def fingerprint(self, examples, world: int) -> dict:
        """The settings that change the arithmetic of a step (a resume must keep them)."""
        digest = hashlib.sha256()
        for example in examples:
            digest.update(f"{example.path.name}\0{example.caption}\0".encode())
        keys = (
            "rank", "alpha", "learning_rate", "lr_schedule", "warmup_steps", "batch_size",
            "gradient_accumulation", "resolution", "buckets", "train_text_encoder",
            "text_encoder_lr", "targets", "seed", "weight_decay", "bf16",
        )  # fmt: skip
        settings = {k: getattr(self, k) for k in keys}
        settings.update(
            model=str(Path(self.model).resolve()) if self.model else None,
            data=digest.hexdigest()[:16],
            processes=world,
        )
        if self.reg_data is not None:  # (only then: resume files from before it still match)
            settings["prior_loss_weight"] = self.prior_loss_weight
        if self.lr_schedule != "constant":
            settings["steps"] = self.steps  # the schedule's length
        if self.new_tokens:  # (only then, as above)
            settings.update(new_tokens=list(self.new_tokens), token_lr=self.token_lr)
        return settings


def learning_rate_factor(step: int, schedule: str, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then constant or a cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    def __init__(self, settings: LoraTraining, components: dict):
        import paddle

        self.settings, self.components = settings, components
        self.distributed = Distributed()
        s = settings
        if s.lr_schedule not in SCHEDULES:
            raise ValueError(f"unknown --lr-schedule {s.lr_schedule!r}: {', '.join(SCHEDULES)}")
        if s.targets not in lora_layers.TARGET_SETS:
            raise ValueError(
                f"unknown --targets {s.targets!r}: {', '.join(lora_layers.TARGET_SETS)}"
            )
        if s.bf16:
            check_bf16_available()
        self.denoiser, self.vae = components["denoiser"], components["vae"]
        self.text_encoder = components["text_encoder"]
        self.prediction_type = self.denoiser.prediction_type
        objective.target(np.zeros(1), np.zeros(1), 1, 1, self.prediction_type)  # supported?
        self.abar = objective.alphas_cumprod(components["scheduler"])
        self.examples = data.read_examples(s.data, s.caption, s.caption_column)
        self.loss_weights = self._regularisation(s)
        self.sizes = self._training_sizes()
        world = self.distributed.world
        self.plan = batches.BatchPlan(self.sizes, s.batch_size * world, s.seed)
        if s.steps is None:
            epochs = s.epochs or 10
            s.steps = -(-epochs * self.plan.batches_per_epoch() // s.gradient_accumulation)
        self.unet_layer = self.denoiser.networks()[0].layer
        layers = {"unet": lora_layers.target_layers("unet", self.unet_layer, s.targets)}
        text_layer = self.text_encoder.networks()[0].layer
        if s.train_text_encoder:
            layers["text_encoder"] = lora_layers.target_layers(
                "text_encoder", text_layer, s.targets
            )
        for layer in (self.unet_layer, text_layer, *(n.layer for n in self.vae.networks())):
            for param in layer.parameters():
                param.stop_gradient = True  # the model stays frozen; only the factors learn
        self.lora = lora_layers.LoraSet(layers, s.rank, s.alpha or s.rank, s.seed)
        self.tokens = None
        if s.new_tokens:
            captions = [e.caption for e in self.examples]
            self.tokens = new_tokens.NewTokens(s.new_tokens, self.text_encoder, captions)
        self.parameters = self.lora.parameters + (self.tokens.parameters if self.tokens else [])
        self.conditioning = objective.Conditioning(
            self.text_encoder, s.train_text_encoder or self.tokens is not None
        )
        if s.gradient_checkpointing:
            checkpoint_blocks(self.unet_layer)
        groups = [{"params": self._params("unet")}]
        if s.train_text_encoder:
            te_lr = (s.text_encoder_lr or s.learning_rate) / s.learning_rate
            groups.append({"params": self._params("text_encoder"), "learning_rate": te_lr})
        if self.tokens is not None:
            # no weight decay: it would pull the new rows towards zero, away from the rows
            # of the words they sit among (diffusers' script decays them far less, too)
            token_lr = (s.token_lr or s.learning_rate) / s.learning_rate
            groups.append(
                {"params": self.tokens.parameters, "learning_rate": token_lr, "weight_decay": 0.0}
            )
        self.schedule = paddle.optimizer.lr.LambdaDecay(
            s.learning_rate,
            lambda k: learning_rate_factor(k, s.lr_schedule, s.warmup_steps, s.steps),
        )
        self.optimizer = paddle.optimizer.AdamW(
            self.schedule, parameters=groups, weight_decay=s.weight_decay
        )
        self.configuration = s.fingerprint(self.examples, world)
        self.latents: dict[int, np.ndarray] = {}
        self.step = 0
        if s.resume_from:
            self.step = resume.load(
                s.resume_from, self.lora, self.optimizer, self.configuration, self.tokens
            )

    def _regularisation(self, s: LoraTraining) -> np.ndarray | None:
        """Appends the --reg-data examples; the loss weight of every example (None: all 1)."""
        if not s.prior_loss_weight >= 0 or not math.isfinite(s.prior_loss_weight):
            raise ValueError(f"--prior-loss-weight {s.prior_loss_weight}: must be 0 or more")
        if s.reg_data is None:
            if s.prior_loss_weight != 1.0:
                raise ValueError(
                    "--prior-loss-weight applies to --reg-data images; give --reg-data"
                )
            return None
        if Path(s.reg_data).resolve() == Path(s.data).resolve():
            raise ValueError(f"--reg-data {s.reg_data} is the --data folder itself")
        regularisation = data.read_examples(s.reg_data, s.caption, s.caption_column)
        weights = [1.0] * len(self.examples) + [s.prior_loss_weight] * len(regularisation)
        self.examples = self.examples + regularisation
        return np.asarray(weights, np.float32)

    def _params(self, component):
        return [p for d, u in self.lora.factors[component].values() for p in (d.weight, u.weight)]

    def _training_sizes(self) -> list[tuple[int, int]]:
        """(width, height) every example is trained at: one square, or its aspect bucket."""
        s = self.settings
        factor = self.vae.downsample_factor
        resolution = s.resolution or int(self.denoiser.config.get("sample_size", 64)) * factor
        step = factor * 8 if resolution >= factor * 16 else factor
        if resolution % step:
            raise ValueError(f"--resolution {resolution} is not a multiple of {step}")
        s.resolution = resolution
        if not s.buckets:
            return [(resolution, resolution)] * len(self.examples)
        sizes = data.bucket_sizes(resolution, step)
        return [data.nearest_bucket(data.image_size(e.path), sizes) for e in self.examples]

    # -- one step --------------------------------------------------------------------------------

    def _latents(self, index: int) -> np.ndarray:
        """The VAE's posterior mean of example `index`, scaled as the pipeline scales latents
        (computed once per example: crops are fixed, so it never changes)."""
        if index not in self.latents:
            example = self.examples[index]
            pixels = data.load_pixels(example.path, self.sizes[index])
            mean = self.vae.encode(pixels[None])[0]
            shift = getattr(self.vae, "shift_factor", None) or 0.0
            self.latents[index] = ((mean - shift) * self.vae.scaling_factor).astype(np.float32)
        return self.latents[index]

    def _micro_loss(self, micro: int):
        import paddle

        world, rank = self.distributed.world, self.distributed.rank
        batch = self.plan.batch(micro)
        mine = batch[batches.rank_slice(batch, rank, world)]
        x0 = np.stack([self._latents(i) for i in mine])
        # Noise and timesteps are drawn for the whole global batch, so rank r's share equals
        # the same rows of a single process's draw.
        rng = np.random.default_rng([self.settings.seed, NOISE_STREAM, micro])
        noise = rng.standard_normal((len(batch), *x0.shape[1:])).astype(np.float32)
        timesteps = rng.integers(0, len(self.abar), size=len(batch))
        part = batches.rank_slice(batch, rank, world)
        noise, timesteps = noise[part], timesteps[part]
        xt, signal, spread = objective.noised(x0, noise, timesteps, self.abar)
        wanted = objective.target(x0, noise, signal, spread, self.prediction_type)
        with autocast(self.settings.bf16):
            context = self.conditioning([self.examples[i].caption for i in mine])
            predicted = self.unet_layer(
                paddle.to_tensor(xt), paddle.to_tensor(timesteps.astype(np.float32)), context
            )
        error = predicted.astype("float32") - paddle.to_tensor(wanted)
        if self.loss_weights is None:
            return (error**2).mean()
        # kohya's prior loss: each example's mean squared error times its weight, averaged
        per_example = (error**2).reshape([len(mine), -1]).mean(axis=1)
        return (per_example * paddle.to_tensor(self.loss_weights[mine])).mean()

    def train_step(self) -> float:
        accumulation = self.settings.gradient_accumulation
        total = 0.0
        for j in range(accumulation):
            loss = self._micro_loss(self.step * accumulation + j) / accumulation
            loss.backward()
            total += float(loss)
        self.distributed.average_gradients(self.parameters)
        self.optimizer.step()
        self.optimizer.clear_grad()
        self.schedule.step()
        self.step += 1
        return self.distributed.mean(total)

    # -- the run -------------------------------------------------------------------------------

    def run(self, on_step=None) -> list[float]:
        s = self.settings
        losses = []
        bar = self._progress()
        if s.log and self.distributed.rank == 0:
            Path(s.log).parent.mkdir(parents=True, exist_ok=True)
        started, first = time.perf_counter(), self.step
        while self.step < s.steps:
            loss = self.train_step()
            losses.append(loss)
            rate = (self.step - first) / max(time.perf_counter() - started, 1e-9)
            if bar is not None:
                bar.set_postfix_str(f"loss {loss:.4f}, {rate:.2f} steps/s", refresh=False)
                bar.update(1)
            if on_step is not None:
                on_step(self.step, loss)
            if s.log and self.distributed.rank == 0:
                record = {"step": self.step, "loss": loss, "lr": self.schedule.get_lr()}
                with open(s.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**record, "steps_per_s": round(rate, 4)}) + "\n")
            if s.save_every and self.step % s.save_every == 0 and self.step < s.steps:
                self.save_checkpoint()
            if s.sample_every and s.sample_prompts and self.step % s.sample_every == 0:
                self.render_samples()
        if bar is not None:
            bar.close()
        if self.distributed.rank == 0:
            self.write(Path(s.output))
        return losses

    def _progress(self):
        if not self.settings.progress or self.distributed.rank != 0:
            return None
        from tqdm import tqdm

        return tqdm(total=self.settings.steps, initial=self.step, unit="step", desc="train lora")

    def training_record(self) -> dict:
        return {
            **self.configuration,
            "steps_done": self.step,
            "prediction_type": self.prediction_type,
            "examples": len(self.examples),
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lora_layers.write_lora(
            self.lora, path, self.settings.output_format, self.training_record(), self.tokens
        )

    def checkpoint_paths(self, step: int) -> tuple[Path, Path]:
        out = Path(self.settings.output)
        stem = out.with_suffix("")
        return (
            stem.with_name(f"{stem.name}-step{step:06d}.safetensors"),
            stem.with_name(f"{stem.name}-step{step:06d}.state"),
        )

    def save_checkpoint(self) -> None:
        """Rank 0 writes the LoRA so far and the resume file; older resume files go (the LoRA
        files stay: they are small and let one compare steps)."""
        if self.distributed.rank != 0:
            return
        lora_path, state_path = self.checkpoint_paths(self.step)
        self.write(lora_path)
        resume.save(
            state_path, self.lora, self.optimizer, self.step, self.configuration, self.tokens
        )
        for old in sorted(state_path.parent.glob(f"{Path(self.settings.output).stem}-step*.state")):
            if old != state_path:
                old.unlink()

    def render_samples(self) -> None:
        if self.distributed.rank != 0:
            return
        from paddiff.pipeline import Pipeline

        c = self.components
        # a fresh pipeline each time: its prompt cache must not keep embeddings from before
        # the text encoder's LoRA moved
        pipe = Pipeline(c["text_encoder"], c["denoiser"], c["vae"], c["scheduler"])
        result = pipe.text_to_image(
            list(self.settings.sample_prompts),
            steps=self.settings.sample_steps,
            seed=self.settings.seed,
            progress=False,
        )
        folder = Path(self.settings.output).with_suffix("")
        folder = folder.with_name(folder.name + "-samples")
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(result.images):
            image.save(folder / f"step{self.step:06d}-{i}.png")
