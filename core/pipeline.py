"""Text-to-image, image-to-image and inpainting, assembled from the five component interfaces.

The loop below talks only to the interfaces in `paddiff.interfaces`, with NumPy arrays:

    conditioning = TextEncoder.encode(prompt)              (cached; see paddiff.prompts)
    x = noise from Generator(seed) * init_noise_sigma      (image/inpaint: VAE latents + noise)
    for t in Scheduler.timesteps:
        eps = Denoiser([x, x], t, [uncond, cond])          (one call for the whole batch)
        x = Scheduler.step(uncond_eps + g * (cond_eps - uncond_eps), t, x, generator)
    image = VAE.decode(x / scaling_factor)

Classifier-free guidance (Ho & Salimans 2022): the denoiser is run with and without the prompt,
and the step follows uncond + g * (cond - uncond). With g <= 1 the unconditional pass is skipped.

Each image has its own `Generator(seed)` and its own scheduler instance (schedulers keep state,
and ancestral ones draw noise), so image i of a batch gets exactly the noise that the same seed
gets alone. Text encoding and VAE decoding run one image per call for the same reason.

The denoiser is where batching could matter: Paddle's CPU kernels do not promise that a batch
entry's result is bit-identical to the same input run alone (on the tiny sd1 fixture UNet the
outputs differed by up to 1.4e-6). So by default each denoiser call holds one image - its
unconditional and conditional passes together, a batch of 2 - and a batch reproduces each seed
exactly. `Pipeline.denoiser_batch_size = None` puts all images in one call (batch 2N), which
can be faster on a GPU, at the price of last-bit differences from single-image runs.
"""

from __future__ import annotations

import inspect
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddiff
from paddiff import images as imageio
from paddiff import validation as check
from paddiff.interfaces import SchedulerOutput
from paddiff.prompt_cache import PromptCache
from paddiff.prompts import encode_pair
from paddiff.randomness import Generator
from paddiff.results import GenerationCancelled, GenerationResult, StepInfo
from paddiff.safety import SafetyFilters
from paddiff.scheduler_names import create_scheduler
from paddiff.validation import DEFAULT_MAX_IMAGES, DEFAULT_MAX_PIXELS, ValidationError

COMPONENT_NAMES = ("text_encoder", "denoiser", "vae", "scheduler")


@dataclass
class _Request:
    """A validated call: what every image needs before compute starts."""

    images: list[tuple]  # (prompt, negative prompt, prompt index), one per image
    seeds: list  # int, Generator or None (random), one per image
    cond_embeds: np.ndarray | None  # given prompt embeddings, one per prompt
    uncond_embeds: np.ndarray | None
    make_scheduler: Any  # () -> a fresh scheduler
    scheduler_name: str
    steps: int
    guidance_scale: float
    eta: float
    width: int
    height: int
    prompt_verdicts: list = field(default_factory=list)


@dataclass
class _Job:
    """One image being generated: its prompt, noise source, scheduler and latents."""

    prompt: str | None
    negative_prompt: str | None
    seed: int | None
    generator: Generator
    scheduler: Any
    cond: np.ndarray | None = None
    uncond: np.ndarray | None = None
    latents: np.ndarray | None = None
    extra_channels: np.ndarray | None = None  # mask + masked-image latents (inpainting UNet)
    blend: tuple | None = None  # (image latents, noise, mask) for inpainting with a plain UNet


class Pipeline:
    """Generates images with one text encoder, denoiser, VAE and scheduler.

    Attributes a caller may change:
        max_pixels:          largest width x height accepted.
        max_images:          most images one call may return (all are held in memory).
        denoiser_batch_size: most images per denoiser call (default 1; None: all at once).
                             Each call holds 2 x this many latents when guidance is on.
        prompt_cache:        the `PromptCache` of prompt embeddings.
        long_prompts:        read WebUI emphasis ("(word:1.3)") and encode prompts longer
                             than the text encoder's window in chunks, instead of cutting them.
        safety:              a `paddiff.safety.SafetyFilters`, run on prompts before
                             encoding and on images after decoding.
    """

    def __init__(
        self,
        text_encoder,
        denoiser,
        vae,
        scheduler,
        *,
        safety_filters=None,
        model_name: str = "",
        model_path: str | Path | None = None,
        prompt_cache: PromptCache | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_images: int = DEFAULT_MAX_IMAGES,
        denoiser_batch_size: int | None = 1,
        long_prompts: bool = False,
    ):
        self.text_encoder = text_encoder
        self.denoiser = denoiser
        self.vae = vae
        self.scheduler = scheduler
        self.safety = as_safety(safety_filters)
        self.model_name = model_name
        self.model_path = Path(model_path) if model_path else None
        self.prompt_cache = prompt_cache if prompt_cache is not None else PromptCache()
        self.max_pixels = max_pixels
        self.max_images = max_images
        self.denoiser_batch_size = denoiser_batch_size
        self.long_prompts = long_prompts
        self._model_hash: str | None = None

    # -- assembling --------------------------------------------------------------------------

    def with_components(self, **overrides) -> Pipeline:
        """A pipeline sharing everything but the given components (nothing is reloaded).

        `scheduler` may be a name ("dpm++2m-karras", "EulerDiscreteScheduler") made from this
        model's scheduler config; `safety_filters` a new list.
        """
        unknown = set(overrides) - set(COMPONENT_NAMES) - {"safety_filters"}
        if unknown:
            raise TypeError(
                f"unknown component(s) {', '.join(sorted(unknown))}; "
                f"components are {', '.join(COMPONENT_NAMES)} and safety_filters"
            )
        new = _shallow_copy(self)
        if isinstance(overrides.get("scheduler"), str):
            overrides["scheduler"] = self._make_scheduler(overrides["scheduler"])[0]()
        for name, value in overrides.items():
            if name == "safety_filters":
                new.safety = as_safety(value)
            else:
                setattr(new, name, value)
        if any(name in overrides for name in ("denoiser", "vae", "text_encoder")):
            new._model_hash = None
        return new

    @property
    def vae_factor(self) -> int:
        return int(self.vae.downsample_factor)

    def native_size(self) -> tuple[int, int]:
        """(width, height) the model was trained at: the UNet's sample size x the VAE factor."""
        sample_size = getattr(self.denoiser, "sample_size", None)
        if sample_size is None:
            sample_size = (getattr(self.denoiser, "config", None) or {}).get("sample_size", 64)
        if isinstance(sample_size, (list, tuple)):
            height, width = sample_size
        else:
            height = width = sample_size
        return int(width) * self.vae_factor, int(height) * self.vae_factor

    def model_hash(self) -> str:
        """First 10 hex digits of the weights' SHA-256 (WebUI's "Model hash"), computed once."""
        if self._model_hash is None:
            from paddiff.model_hash import model_hash

            self._model_hash = model_hash(self.model_path) if self.model_path else ""
        return self._model_hash

    # -- the three modes ---------------------------------------------------------------------

    def text_to_image(
        self,
        prompt=None,
        negative_prompt=None,
        *,
        steps: int = 20,
        guidance_scale: float = 7.5,
        width: int | None = None,
        height: int | None = None,
        num_images_per_prompt: int = 1,
        seed=None,
        eta: float = 0.0,
        scheduler=None,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        latents=None,
        progress: bool = True,
        callback=None,
    ) -> GenerationResult:
        """Images for a prompt (or a list of prompts). `seed` is one seed (image i gets seed+i),
        a list with one per image, or None for random seeds (recorded in the settings).
        `latents` are initial latents (images, channels, h, w), before `init_noise_sigma`."""
        native_width, native_height = self.native_size()
        width = native_width if width is None else width
        height = native_height if height is None else height
        request = self._validate(
            prompt,
            negative_prompt,
            steps,
            guidance_scale,
            width,
            height,
            num_images_per_prompt,
            seed,
            eta,
            scheduler,
            prompt_embeds,
            negative_prompt_embeds,
        )
        shape = self._latent_shape(width, height)
        if latents is not None:
            latents = check.check_latents(latents, (len(request.images), *shape[1:]))
        jobs = self._start(request)
        timesteps = self._set_timesteps(jobs, steps, strength=1.0)
        for i, job in enumerate(jobs):
            initial = latents[i : i + 1] if latents is not None else job.generator.randn(shape)
            job.latents = (initial * np.float32(job.scheduler.init_noise_sigma)).astype(np.float32)
        self._denoise(jobs, timesteps, guidance_scale, eta, progress, callback)
        return self._finish(jobs, request, mode="txt2img")

    def image_to_image(
        self,
        prompt=None,
        image=None,
        strength: float = 0.8,
        negative_prompt=None,
        *,
        steps: int = 20,
        guidance_scale: float = 7.5,
        width: int | None = None,
        height: int | None = None,
        num_images_per_prompt: int = 1,
        seed=None,
        eta: float = 0.0,
        scheduler=None,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        progress: bool = True,
        callback=None,
    ) -> GenerationResult:
        """Repaint `image` guided by the prompt; `strength` 0 keeps it, 1 replaces it entirely
        (it is the fraction of the steps that are run, starting from that much noise)."""
        check.check_strength(strength)
        check.check_strength_leaves_a_step(strength, steps)
        picture = imageio.load_image(image, "image")
        width, height = self._size_for(picture, width, height)
        request = self._validate(
            prompt,
            negative_prompt,
            steps,
            guidance_scale,
            width,
            height,
            num_images_per_prompt,
            seed,
            eta,
            scheduler,
            prompt_embeds,
            negative_prompt_embeds,
        )
        pixels = imageio.image_to_array(picture, width, height)
        jobs = self._start(request)
        timesteps = self._set_timesteps(jobs, steps, strength)
        for job in jobs:
            image_latents = self._encode_image(pixels, job.generator)
            job.latents = self._noised(job, image_latents, timesteps)
        self._denoise(jobs, timesteps, guidance_scale, eta, progress, callback)
        return self._finish(jobs, request, mode="img2img", strength=strength)

    def inpaint(
        self,
        prompt=None,
        image=None,
        mask_image=None,
        strength: float = 1.0,
        negative_prompt=None,
        *,
        steps: int = 20,
        guidance_scale: float = 7.5,
        width: int | None = None,
        height: int | None = None,
        num_images_per_prompt: int = 1,
        seed=None,
        eta: float = 0.0,
        scheduler=None,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        progress: bool = True,
        callback=None,
    ) -> GenerationResult:
        """Repaint the white part of `mask_image` in `image`.

        An inpainting UNet (9 input channels) also sees the mask and the latents of the image
        with the masked part blanked. An ordinary UNet (4 channels) is steered instead by
        replacing, after every step, the latents outside the mask with the original image's
        latents noised to the current timestep.
        """
        check.check_strength(strength)
        check.check_strength_leaves_a_step(strength, steps)
        picture = imageio.load_image(image, "image")
        mask = imageio.load_image(mask_image, "mask_image")
        if mask.size != picture.size:
            raise ValidationError(
                f"mask_image is {mask.size[0]}x{mask.size[1]} but image is "
                f"{picture.size[0]}x{picture.size[1]}; they must be the same size"
            )
        channels = int(self.denoiser.in_channels)
        latent_channels = int(self.vae.latent_channels)
        if channels not in (latent_channels, 2 * latent_channels + 1):
            raise ValidationError(
                f"inpainting needs a denoiser with {latent_channels} or "
                f"{2 * latent_channels + 1} input channels; this one has {channels}"
            )
        width, height = self._size_for(picture, width, height)
        request = self._validate(
            prompt,
            negative_prompt,
            steps,
            guidance_scale,
            width,
            height,
            num_images_per_prompt,
            seed,
            eta,
            scheduler,
            prompt_embeds,
            negative_prompt_embeds,
        )
        pixels = imageio.image_to_array(picture, width, height)
        repaint = imageio.mask_to_array(mask, width, height)
        latent_mask = imageio.resize_nearest(
            repaint, height // self.vae_factor, width // self.vae_factor
        )
        inpainting_unet = channels != latent_channels
        jobs = self._start(request)
        timesteps = self._set_timesteps(jobs, steps, strength)
        for job in jobs:
            self._start_inpaint(
                job, pixels, repaint, latent_mask, timesteps, strength, inpainting_unet
            )
        self._denoise(jobs, timesteps, guidance_scale, eta, progress, callback)
        return self._finish(jobs, request, mode="inpaint", strength=strength)

    # -- preparation -------------------------------------------------------------------------

    def _validate(
        self,
        prompt,
        negative_prompt,
        steps,
        guidance_scale,
        width,
        height,
        per_prompt,
        seed,
        eta,
        scheduler,
        prompt_embeds,
        negative_prompt_embeds,
    ) -> _Request:
        """Check every setting and resolve prompts, seeds and the scheduler; no compute."""
        check.check_steps(steps)
        check.check_guidance(guidance_scale)
        check.check_eta(eta)
        check.check_count("num_images_per_prompt", per_prompt)
        check.check_size(width, height, self.vae_factor, self.max_pixels)
        prompts, cond_embeds = self._prompts_or_embeddings(prompt, prompt_embeds)
        negatives = check.match_negative_prompts(negative_prompt, len(prompts))
        uncond_embeds = None
        if negative_prompt_embeds is not None:
            if negative_prompt is not None:
                raise ValidationError("give negative_prompt or negative_prompt_embeds, not both")
            uncond_embeds = check.check_embeddings(
                negative_prompt_embeds, "negative_prompt_embeds", len(prompts), self.text_encoder
            )
        count = len(prompts) * per_prompt
        check.check_image_count(count, self.max_images)
        seeds = check.check_seeds(seed, count)
        make_scheduler, scheduler_name = self._make_scheduler(scheduler)
        images = [  # image i belongs to prompt i // per_prompt
            (prompts[i // per_prompt], negatives[i // per_prompt], i // per_prompt)
            for i in range(count)
        ]
        return _Request(
            images,
            seeds,
            cond_embeds,
            uncond_embeds,
            make_scheduler,
            scheduler_name,
            steps,
            guidance_scale,
            eta,
            width,
            height,
        )

    def _prompts_or_embeddings(self, prompt, prompt_embeds):
        if prompt_embeds is None:
            if prompt is None:
                raise ValidationError("give a prompt (or prompt_embeds)")
            return check.as_prompt_list(prompt), None
        if prompt is not None:
            raise ValidationError("give prompt or prompt_embeds, not both")
        embeds = check.check_embeddings(prompt_embeds, "prompt_embeds", None, self.text_encoder)
        return [None] * len(embeds), embeds

    def _make_scheduler(self, spec):
        """(factory making fresh schedulers, display name) for a per-call scheduler choice:
        None (the model's own), a name or alias, or a scheduler instance to copy."""
        base = self.scheduler
        if spec is None or not isinstance(spec, str):
            template = base if spec is None else spec
            config = dict(template.config)
            return (lambda: type(template).from_config(dict(config))), type(template).__name__
        try:
            first = create_scheduler(spec, dict(base.config))
        except (KeyError, ValueError, paddiff.PluginError) as exc:
            raise ValidationError(f"unknown scheduler {spec!r}: {_message(exc)}") from None
        config = dict(first.config)
        return (lambda: type(first).from_config(dict(config))), spec

    def _size_for(self, picture, width, height) -> tuple[int, int]:
        """The requested size, or the image's own size rounded down to a valid multiple."""
        import math

        multiple = math.lcm(check.SIZE_MULTIPLE, self.vae_factor)
        if width is None:
            width = max(multiple, picture.size[0] - picture.size[0] % multiple)
        if height is None:
            height = max(multiple, picture.size[1] - picture.size[1] % multiple)
        return width, height

    def _start(self, request: _Request) -> list[_Job]:
        """Safety checks on the prompts, then encoding and one job per image."""
        request.prompt_verdicts = [
            verdict
            for prompt, negative in dict.fromkeys((p, n) for p, n, _ in request.images)
            for verdict in self.safety.check_prompt(prompt, negative)
        ]
        guidance = request.guidance_scale > 1.0
        jobs = []
        for (prompt, negative, index), seed in zip(request.images, request.seeds, strict=True):
            if seed is None:
                seed = secrets.randbelow(2**32)
            generator = seed if isinstance(seed, Generator) else Generator(seed)
            job = _Job(
                prompt,
                negative,
                generator.seed if generator is seed else seed,
                generator,
                request.make_scheduler(),
            )
            job.cond, job.uncond = self._conditioning(request, prompt, negative, index, guidance)
            jobs.append(job)
        return jobs

    def _conditioning(self, request, prompt, negative, index, guidance):
        """(cond, uncond) for one prompt, from given embeddings or the text encoder."""
        cond_embeds, uncond_embeds = request.cond_embeds, request.uncond_embeds
        if cond_embeds is None:
            # The negative prompt is encoded with the prompt unless its embeddings were given.
            cond, uncond = self._encode(prompt, negative, guidance and uncond_embeds is None)
        else:
            cond, uncond = cond_embeds[index : index + 1], None
        if not guidance:
            return cond, None
        if uncond_embeds is not None:
            return cond, uncond_embeds[index : index + 1]
        if uncond is None:  # prompt embeddings given, negative prompt as text (or none)
            if negative:
                uncond = self._encode(negative, None, False)[0]
            else:
                uncond = np.asarray(self.text_encoder.unconditional(1), dtype=np.float32)
        return cond, uncond

    def _encode(self, prompt, negative, guidance):
        return encode_pair(
            self.text_encoder, prompt, negative, guidance, self.prompt_cache, self.long_prompts
        )

    def _latent_shape(self, width: int, height: int) -> tuple[int, int, int, int]:
        f = self.vae_factor
        return (1, int(self.vae.latent_channels), height // f, width // f)

    def _set_timesteps(self, jobs: list[_Job], steps: int, strength: float) -> np.ndarray:
        """Timesteps to run: the last `int(steps * strength)` of a `steps`-step schedule
        (image-to-image starts part-way, from a partly noised image)."""
        skipped = steps - min(int(steps * strength), steps)
        for job in jobs:
            job.scheduler.set_timesteps(steps)
            order = int(getattr(job.scheduler, "order", 1))
            if skipped and hasattr(job.scheduler, "set_begin_index"):
                job.scheduler.set_begin_index(skipped * order)
        order = int(getattr(jobs[0].scheduler, "order", 1))
        return np.asarray(jobs[0].scheduler.timesteps)[skipped * order :]

    def _encode_image(self, pixels: np.ndarray, generator: Generator) -> np.ndarray:
        latents = np.asarray(self.vae.encode(pixels, generator), dtype=np.float32)
        return latents * np.float32(self.vae.scaling_factor)

    def _noised(self, job: _Job, image_latents: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        """Image latents noised to the first timestep that will run (forward diffusion)."""
        if len(timesteps) == 0:  # strength 0: nothing to repaint
            return image_latents
        noise = job.generator.randn(image_latents.shape)
        return job.scheduler.add_noise(image_latents, noise, timesteps[:1])

    def _start_inpaint(
        self, job, pixels, repaint, latent_mask, timesteps, strength, inpainting_unet
    ) -> None:
        # The draws follow the reference pipeline's order: image posterior, initial noise,
        # masked-image posterior, so recorded reference noise replays exactly.
        from_noise = strength >= 1.0
        image_latents = None
        if not inpainting_unet or not from_noise:
            image_latents = self._encode_image(pixels, job.generator)
        shape = self._latent_shape(pixels.shape[3], pixels.shape[2])
        noise = job.generator.randn(shape)
        if from_noise:
            job.latents = noise * np.float32(job.scheduler.init_noise_sigma)
        elif len(timesteps) == 0:
            job.latents = image_latents
        else:
            job.latents = job.scheduler.add_noise(image_latents, noise, timesteps[:1])
        if inpainting_unet:
            masked_pixels = pixels * (repaint < 0.5)
            masked_latents = self._encode_image(masked_pixels, job.generator)
            job.extra_channels = np.concatenate([latent_mask, masked_latents], axis=1)
        else:
            job.blend = (image_latents, noise, latent_mask)

    # -- the loop ----------------------------------------------------------------------------

    def _denoise(self, jobs, timesteps, guidance_scale, eta, progress, callback) -> None:
        from tqdm.auto import tqdm

        guided = guidance_scale > 1.0
        step_options = _step_options(jobs[0].scheduler, eta)
        bar = tqdm(total=len(timesteps), desc="denoising", unit="step", disable=not progress)
        try:
            for i, t in enumerate(timesteps):
                for group in self._groups(jobs):
                    outputs = self._predict(group, t, guidance_scale if guided else None)
                    for job, output in zip(group, outputs, strict=True):
                        result = job.scheduler.step(
                            output, t, job.latents, generator=job.generator, **step_options
                        )
                        job.latents = _prev_sample(result)
                        if job.blend is not None:
                            job.latents = _blend(job, timesteps, i)
                bar.update(1)
                if callback is not None:
                    info = StepInfo(
                        i, len(timesteps), t, np.concatenate([job.latents for job in jobs])
                    )
                    if callback(info) is False:
                        raise GenerationCancelled(i)
        finally:
            bar.close()

    def _groups(self, jobs: list[_Job]):
        """Jobs per denoiser call: up to `denoiser_batch_size` in a row whose conditionings
        have the same shape (so they can be stacked)."""
        limit = self.denoiser_batch_size or len(jobs)
        group: list[_Job] = []
        for job in jobs:
            if group and (
                len(group) == limit
                or job.cond.shape != group[0].cond.shape
                or _shape(job.uncond) != _shape(group[0].uncond)
            ):
                yield group
                group = []
            group.append(job)
        if group:
            yield group

    def _predict(self, group: list[_Job], t, guidance_scale: float | None) -> list[np.ndarray]:
        """Model outputs for each job at timestep t, guided if `guidance_scale` is given: one
        denoiser call holding [unconditional batch; conditional batch]."""
        inputs = []
        for job in group:
            x = np.asarray(job.scheduler.scale_model_input(job.latents, t), dtype=np.float32)
            if job.extra_channels is not None:
                x = np.concatenate([x, job.extra_channels], axis=1)
            inputs.append(x)
        conds = [job.cond for job in group]
        if guidance_scale is not None:
            inputs, conds = inputs + inputs, [job.uncond for job in group] + conds
        output = np.asarray(
            self.denoiser(np.concatenate(inputs), t, np.concatenate(conds)), dtype=np.float32
        )
        n = len(group)
        if guidance_scale is not None:
            uncond, cond = output[:n], output[n:]
            output = uncond + np.float32(guidance_scale) * (cond - uncond)
        return [output[i : i + 1] for i in range(n)]

    # -- results -----------------------------------------------------------------------------

    def _finish(self, jobs: list[_Job], request: _Request, mode: str, strength=None):
        scaling = np.float32(self.vae.scaling_factor)
        # One image per decode call: decoding never depends on the rest of the batch.
        pictures = [
            imageio.array_to_image(np.asarray(self.vae.decode(job.latents / scaling))[0])
            for job in jobs
        ]
        pictures, verdicts = self.safety.filter_images(pictures)  # refused ones come back black
        settings = [self._settings(job, request, mode, strength) for job in jobs]
        return GenerationResult(pictures, settings, verdicts, request.prompt_verdicts)

    def _settings(self, job: _Job, request: _Request, mode: str, strength) -> dict:
        from paddiff.png_info import sampler_label

        scheduler = job.scheduler
        settings = {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "steps": request.steps,
            "sampler": sampler_label(type(scheduler).__name__, scheduler.config),
            "scheduler": request.scheduler_name,
            "guidance_scale": request.guidance_scale,
            "seed": job.seed,
            "width": request.width,
            "height": request.height,
            "model": self.model_name,
            "model_hash": self.model_hash(),
            "mode": mode,
            "version": f"paddiff {paddiff.__version__}",
        }
        if request.eta:
            settings["eta"] = request.eta
        if strength is not None:
            settings["strength"] = strength
        return settings


# -- helpers -----------------------------------------------------------------------------------


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _step_options(scheduler, eta: float) -> dict:
    """`eta` for schedulers whose step takes it (DDIM's stochasticity); others ignore it, as in
    the reference pipelines."""
    try:
        accepts_eta = "eta" in inspect.signature(scheduler.step).parameters
    except (TypeError, ValueError):
        accepts_eta = False
    return {"eta": eta} if accepts_eta else {}


def _prev_sample(result) -> np.ndarray:
    sample = (
        result.prev_sample
        if isinstance(result, SchedulerOutput) or hasattr(result, "prev_sample")
        else result[0]
    )
    return np.asarray(sample, dtype=np.float32)


def _blend(job: _Job, timesteps: np.ndarray, i: int) -> np.ndarray:
    """Keep the unmasked part equal to the original image, noised to the next timestep."""
    image_latents, noise, mask = job.blend
    known = image_latents
    if i < len(timesteps) - 1:
        known = job.scheduler.add_noise(image_latents, noise, timesteps[i + 1 : i + 2])
    return ((1.0 - mask) * known + mask * job.latents).astype(np.float32)


def _shape(array) -> tuple | None:
    return None if array is None else array.shape


def as_safety(safety_filters) -> SafetyFilters:
    """`SafetyFilters` for what a caller passed: None (no filtering), a `SafetyFilters` (as
    it is, e.g. from `paddiff.safety.load_filters`), or `SafetyFilter` instances / registry
    names, each checking what it declares in `checks` (both prompts and images by default)."""
    if isinstance(safety_filters, SafetyFilters):
        return safety_filters
    if safety_filters is None:
        return SafetyFilters()
    if not isinstance(safety_filters, (list, tuple)):
        safety_filters = [safety_filters]
    group = SafetyFilters()
    for item in safety_filters:
        instance = (
            paddiff.get("safety_filters", item).from_config({}) if isinstance(item, str) else item
        )
        checks = getattr(instance, "checks", ("prompts", "images"))
        if "prompts" in checks:
            group.prompt_filters.append(instance)
        if "images" in checks:
            group.image_filters.append(instance)
    return group


def _shallow_copy(pipeline: Pipeline) -> Pipeline:
    new = Pipeline.__new__(Pipeline)
    new.__dict__.update(pipeline.__dict__)
    return new


# -- loading -----------------------------------------------------------------------------------

# load_pipeline lives with the rest of model loading; these names stay importable from here.
from paddiff.loader import (  # noqa: E402, F401
    EMBEDDED_MODEL_NAME,
    embedded_model_path,
    load_pipeline,
)
