"""Text-to-image, image-to-image and inpainting, assembled from the component interfaces.

One call reads in five steps:

    request = build_request(...)                 every setting checked, nothing computed yet
    conditioning = text encoder(prompts)         after the prompt safety check (cached)
    latents = sample(x0-denoiser, first latents) paddiff.sampling: one plan for any scheduler
    images = VAE.decode(latents)                 one image per call
    images, verdicts = image safety check        refused images come back black

Classifier-free guidance (Ho & Salimans 2022) runs the denoiser with and without the prompt
and follows uncond + g * (cond - uncond); with g <= 1 the unconditional pass is skipped.

Each image has its own `Generator(seed)`, so image i of a batch gets exactly the noise that the
same seed gets alone. Sampler arithmetic is elementwise, so it does not depend on the batch;
the denoiser might: Paddle's CPU kernels do not promise that a batch entry's result is
bit-identical to the same input run alone (on the tiny sd1 fixture UNet the outputs differed by
up to 1.4e-6). So by default each denoiser call holds one image (its unconditional and
conditional passes, a batch of 2) and a batch reproduces each seed exactly.
`Pipeline.denoiser_batch_size = None` puts all images in one call (batch 2N), which can be
faster on a GPU, at the price of last-bit differences from single-image runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import paddiff
from paddiff import images as imageio
from paddiff import modes
from paddiff.prompt_cache import PromptCache
from paddiff.prompt_checks import warn_about_prompts
from paddiff.prompts import encode_pair
from paddiff.randomness import BatchNoise
from paddiff.request import build_request, generator_for, resolve_scheduler, seed_of
from paddiff.results import GenerationCancelled, GenerationResult, StepInfo
from paddiff.safety import as_safety
from paddiff.sampling import plan_sampling
from paddiff.sampling.denoiser import GuidedNetwork
from paddiff.validation import DEFAULT_MAX_IMAGES, DEFAULT_MAX_PIXELS, SIZE_MULTIPLE

COMPONENT_NAMES = ("text_encoder", "denoiser", "vae", "scheduler")


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
        self._lora = None
        self.embeddings: dict[str, Path] = {}  # textual-inversion token -> its file
        self.controlnets: list = []  # paddiff.interfaces.ControlNet, in control_image order

    # -- adapters (LoRA / LoCon; see paddiff.lora and docs/adapters.md) -----------------------

    @property
    def lora(self):
        """The pipeline's `paddiff.lora.LoraAdapters` (created on first use)."""
        if self._lora is None:
            from paddiff.lora import LoraAdapters

            self._lora = LoraAdapters(self)
        return self._lora

    def load_lora_weights(self, path, adapter_name: str | None = None, scale: float = 1.0):
        """Load a LoRA / LoCon file (kohya, A1111, LyCORIS, diffusers, PEFT or ppdiffusers) into
        the UNet and text encoder(s), enabled with weight `scale` next to the adapters already
        enabled. Refused with `paddiff.lora.LoraMismatchError` (nothing changed) when it does
        not fit the model. Returns a `paddiff.lora.LoadReport`."""
        return self.lora.load(path, adapter_name, scale)

    def set_adapters(self, adapter_names, adapter_weights=None) -> None:
        """Enable exactly these adapters, with these weights (default 1.0 each)."""
        self.lora.set_adapters(adapter_names, adapter_weights)

    def get_active_adapters(self) -> list[str]:
        return list(self.lora.active)

    def disable_lora(self) -> None:
        self.lora.disable()

    def unload_lora_weights(self) -> None:
        """Remove every adapter that is not fused: the model's own weights come back exactly."""
        self.lora.unload()

    def fuse_lora(self, lora_scale: float = 1.0, adapter_names=None) -> None:
        """Make the enabled adapters part of the model (they survive `unload_lora_weights`)."""
        self.lora.fuse(adapter_names, lora_scale)

    def unfuse_lora(self) -> None:
        self.lora.unfuse()

    def load_textual_inversion(self, path, token: str | None = None) -> str:
        """Add a textual-inversion embedding (A1111 .pt / .safetensors, diffusers'
        learned_embeds) as `token` (default: the name the file gives, else its stem); the token
        then works in prompts and negative prompts. Returns the token."""
        from paddiff.lora.textual_inversion import load_textual_inversion

        return load_textual_inversion(self, path, token)

    def unload_textual_inversion(self, tokens=None) -> None:
        """Remove textual-inversion tokens (all by default)."""
        tokens = list(self.embeddings) if tokens is None else list(tokens)
        self.text_encoder.remove_tokens(tokens)
        for token in tokens:
            self.embeddings.pop(token, None)
        self.prompt_cache.clear()

    # -- control nets (paddiff.control, docs/controlnet.md) -----------------------------------

    def load_controlnet(self, controlnet, variant: str | None = None, execution=None) -> list:
        """Use these control nets (a path, a loaded ControlNet, or a list of them) from now on,
        in place of any loaded before; every call then needs one `control_image` per net. A
        control net made for another base model is refused (`ArchitectureMismatchError`), and
        nothing changes. `execution` runs the nets as `paddiff.execution.set_execution` does
        (default: the dynamic graph). Returns the loaded nets."""
        from paddiff.control import check_fits, load_controlnet

        items = list(controlnet) if isinstance(controlnet, (list, tuple)) else [controlnet]
        like = getattr(self.denoiser, "config", None)
        nets = []
        for item in items:
            net = item
            if isinstance(item, (str, Path)):
                net = load_controlnet(item, like=like, variant=variant)
            check_fits(net, self.denoiser, f"control net {item}")
            nets.append(net)
        if execution is not None:
            from paddiff.execution import set_execution

            set_execution(nets, execution)
        self.controlnets = nets
        return nets

    def unload_controlnet(self) -> None:
        self.controlnets = []

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
        if not any(name in overrides for name in ("denoiser", "text_encoder")):
            self.lora  # noqa: B018 (created now, so that both pipelines share one set of adapters)
        new = _shallow_copy(self)
        if "scheduler" in overrides:
            overrides["scheduler"] = resolve_scheduler(self.scheduler, overrides["scheduler"])[0]
        for name, value in overrides.items():
            if name == "safety_filters":
                new.safety = as_safety(value)
            else:
                setattr(new, name, value)
        if any(name in overrides for name in ("denoiser", "vae", "text_encoder")):
            new._model_hash = None
        if any(name in overrides for name in ("denoiser", "text_encoder")):
            new._lora = None  # other networks: adapters are loaded into them anew
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
    # Settings (steps, guidance_scale, width, height, num_images_per_prompt, seed, eta,
    # scheduler, prompt_embeds, negative_prompt_embeds) are described in paddiff.request.

    def text_to_image(
        self, prompt=None, negative_prompt=None, *, progress=True, callback=None, **settings
    ) -> GenerationResult:
        """Images for a prompt (or a list of prompts). `seed` is one seed (image i gets seed+i),
        a list with one per image, or None for random seeds (recorded in the settings).
        `latents` are initial latents (images, channels, h, w), before the initial noise scale.

        With control nets loaded: `control_image` (one per net), `controlnet_conditioning_scale`,
        `control_guidance_start`, `control_guidance_end` (one value, or one per net) and
        `guess_mode`, as in diffusers' StableDiffusionControlNetPipeline; without a width and
        height, the size is the control image's (rounded down to a valid multiple)."""
        from paddiff.control.settings import control_size, pop_control_settings

        control = pop_control_settings(settings)
        size = control_size(control) if self.controlnets else None
        if size is not None and settings.get("width") is None and settings.get("height") is None:
            multiple = math.lcm(SIZE_MULTIPLE, self.vae_factor)
            settings["width"] = max(multiple, size[0] - size[0] % multiple)
            settings["height"] = max(multiple, size[1] - size[1] % multiple)
        request = build_request(self, "txt2img", prompt, negative_prompt, settings)
        return self._generate(request, progress, callback, control)

    def image_to_image(
        self,
        prompt=None,
        image=None,
        strength: float = 0.8,
        negative_prompt=None,
        *,
        progress=True,
        callback=None,
        **settings,
    ) -> GenerationResult:
        """Repaint `image` guided by the prompt; `strength` 0 keeps it, 1 replaces it entirely
        (it is the fraction of the steps that are run, starting from that much noise)."""
        from paddiff.control.settings import pop_control_settings

        control = pop_control_settings(settings)  # control_image & co., as in text_to_image
        settings["strength"] = strength
        request = build_request(self, "img2img", prompt, negative_prompt, settings, image=image)
        return self._generate(request, progress, callback, control)

    def inpaint(
        self,
        prompt=None,
        image=None,
        mask_image=None,
        strength: float = 1.0,
        negative_prompt=None,
        *,
        progress=True,
        callback=None,
        **settings,
    ) -> GenerationResult:
        """Repaint the white part of `mask_image` in `image` (see paddiff.modes.inpaint for how
        inpainting UNets and ordinary UNets are each steered)."""
        from paddiff.control.settings import pop_control_settings

        control = pop_control_settings(settings)  # control_image & co., as in text_to_image
        settings["strength"] = strength
        request = build_request(
            self, "inpaint", prompt, negative_prompt, settings, image=image, mask_image=mask_image
        )
        return self._generate(request, progress, callback, control)

    # -- one call ----------------------------------------------------------------------------

    def _generate(self, request, progress, callback, control=None) -> GenerationResult:
        guidance = self._control_guidance(request, control)
        prompt_verdicts = self._check_prompts(request)
        # e.g. unknown words; words added since (textual inversion, a LoRA's bundled tokens)
        # are known now, so they are taken out first
        added = getattr(getattr(self.text_encoder, "tokenizer", None), "added", None) or {}
        checked = [_without(p, added) for p in request.prompts]
        notes = warn_about_prompts(self.model_path, checked)
        cond, uncond = self._conditioning(request)
        noise = BatchNoise([generator_for(seed) for seed in request.seeds])
        plan = self._plan(request)
        first = self._start(request, plan, noise)
        if guidance is not None:
            guidance.steps = len(plan.timesteps)  # image-to-image runs the last ones only
        network = self._network(request, cond, uncond, first, guidance)
        report = _StepReport(plan, first.after_step, progress, callback, guidance)
        try:
            latents = plan.sample(
                network,
                self._prediction_type(request.scheduler),
                first.latents,
                noise=noise,
                callback=report,
            )
        finally:
            report.bar.close()
        return self._finish(request, latents, prompt_verdicts, notes, guidance)

    # The steps of one call that a model family may change (paddiff.sdxl does).

    def _plan(self, request):
        return plan_sampling(
            _fresh(request.scheduler), request.steps, request.strength or 1.0, request.eta
        )

    def _start(self, request, plan, noise):
        return modes.start(self, request, plan, noise)

    #: what wraps the denoiser for guidance (SDXL's also passes its added conditions)
    guided_network = GuidedNetwork

    def _network(self, request, cond, uncond, first, guidance=None):
        return self.guided_network(
            self.denoiser,
            cond,
            uncond if request.guided else None,
            request.guidance_scale,
            first.extra,
            self.denoiser_batch_size,
            guidance,
        )

    def _finish(
        self, request, latents, prompt_verdicts, notes=(), guidance=None
    ) -> GenerationResult:
        scaling = np.float32(self.vae.scaling_factor)
        pictures = [  # one image per decode call: decoding never depends on the rest of the batch
            imageio.array_to_image(np.asarray(self.vae.decode(latents[i : i + 1] / scaling))[0])
            for i in range(request.count)
        ]
        pictures, verdicts = self.safety.filter_images(pictures)  # refused ones come back black
        settings = [self._settings(request, i, guidance) for i in range(request.count)]
        return GenerationResult(pictures, settings, verdicts, prompt_verdicts, list(notes))

    def _control_guidance(self, request, control):
        """The call's `ControlGuidance` (None without control nets), checked before compute."""
        from paddiff.control import ControlGuidance
        from paddiff.control.settings import control_units

        if control is None:
            return None
        units = control_units(self.controlnets, control, request.width, request.height)
        if not units:
            return None
        # steps: set once the sampling plan knows how many steps this run takes
        return ControlGuidance(units, request.steps, bool(control["guess_mode"]))

    def _check_prompts(self, request) -> list:
        pairs = dict.fromkeys(zip(request.prompts, request.negative_prompts, strict=True))
        return [
            verdict
            for prompt, negative in pairs
            for verdict in self.safety.check_prompt(prompt, negative)
        ]

    def _conditioning(self, request) -> tuple[list, list]:
        """(cond, uncond) per image, from given embeddings or the text encoder (cached)."""
        conds, unconds = [], []
        for prompt, negative, index in zip(
            request.prompts, request.negative_prompts, request.prompt_index, strict=True
        ):
            cond, uncond = self._encode_one(request, prompt, negative, index)
            conds.append(cond)
            unconds.append(uncond)
        return conds, unconds

    def _encode_one(self, request, prompt, negative, index):
        given, given_uncond = request.prompt_embeds, request.negative_prompt_embeds
        guided = request.guided
        if given is None:
            # The negative prompt is encoded with the prompt unless its embeddings were given.
            cond, uncond = encode_pair(
                self.text_encoder,
                prompt,
                negative,
                guided and given_uncond is None,
                self.prompt_cache,
                self.long_prompts,
            )
        else:
            cond, uncond = given[index : index + 1], None
        if not guided:
            return cond, None
        if given_uncond is not None:
            return cond, given_uncond[index : index + 1]
        if uncond is None:  # prompt embeddings given, negative prompt as text (or none)
            if negative:
                uncond = encode_pair(
                    self.text_encoder, negative, None, False, self.prompt_cache, self.long_prompts
                )[0]
            else:
                uncond = np.asarray(self.text_encoder.unconditional(1), dtype=np.float32)
        return cond, uncond

    def _prediction_type(self, scheduler) -> str:
        """What the denoiser's output means: the denoiser declares it (the loader sets it from
        the model folder's scheduler config); a scheduler config is the fallback."""
        declared = getattr(self.denoiser, "prediction_type", None)
        return declared or dict(scheduler.config).get("prediction_type", "epsilon")

    def _settings(self, request, i: int, guidance=None) -> dict:
        from paddiff.png_info import sampler_label
        from paddiff.sampling.sampler import scheduler_class_name

        scheduler = request.scheduler
        settings = {
            "prompt": request.prompts[i],
            "negative_prompt": request.negative_prompts[i],
            "steps": request.steps,
            "sampler": sampler_label(scheduler_class_name(scheduler), dict(scheduler.config)),
            "scheduler": request.scheduler_name,
            "guidance_scale": request.guidance_scale,
            "seed": seed_of(request.seeds[i]),
            "width": request.width,
            "height": request.height,
            "model": self.model_name,
            "model_hash": self.model_hash(),
            "mode": request.mode,
            "version": f"paddiff {paddiff.__version__}",
        }
        if self._lora is not None and self._lora.summary():
            settings["lora_hashes"] = ", ".join(
                f"{lora.name}: {lora.short_hash()}" for _, _, lora in self._lora.summary()
            )
        if self.embeddings:
            from paddiff.lora.files import file_hash

            settings["ti_hashes"] = ", ".join(
                f"{token}: {file_hash(path)}" for token, path in self.embeddings.items()
            )
        if guidance is not None:
            from paddiff.control.info import control_settings

            settings.update(control_settings(guidance))
        if request.eta:
            settings["eta"] = request.eta
        if request.strength is not None:
            settings["strength"] = request.strength
        return settings


class _StepReport:
    """The sampler's per-step callback: the mode's after-step change, the progress bar (one
    tick per step the user asked for), and the caller's callback (False cancels)."""

    def __init__(self, plan, after_step, progress: bool, callback, control=None):
        from tqdm.auto import tqdm

        self.plan, self.after_step, self.callback = plan, after_step, callback
        self.control = control  # told which step runs next (its guidance window)
        self.total = len(plan.timesteps)
        self.bar = tqdm(total=self.total, desc="denoising", unit="step", disable=not progress)

    def __call__(self, i: int, x: np.ndarray) -> np.ndarray:
        if self.after_step is not None:
            x = self.after_step(i, x)
        self.bar.update(1)
        run = i - self.plan.start
        if self.control is not None:
            self.control.step = run + 1
        if self.callback is not None:
            info = StepInfo(run, self.total, self.plan.timesteps[run], x)
            if self.callback(info) is False:
                raise GenerationCancelled(run)
        return x


def _fresh(scheduler):
    """A scheduler ready for a new run: samplers are stateless; protocol schedulers keep state
    between steps, so each call gets a new instance from the same config."""
    from paddiff.sampling import ConfiguredSampler

    if isinstance(scheduler, ConfiguredSampler):
        return scheduler
    return type(scheduler).from_config(dict(scheduler.config))


def _without(prompt: str, tokens) -> str:
    """`prompt` with every occurrence of `tokens` replaced by a space."""
    for token in sorted(tokens, key=len, reverse=True):
        prompt = prompt.replace(token, " ")
    return prompt


def _shallow_copy(pipeline: Pipeline) -> Pipeline:
    new = type(pipeline).__new__(type(pipeline))  # (a subclass such as SDXLPipeline stays one)
    new.__dict__.update(pipeline.__dict__)
    return new


# -- loading -----------------------------------------------------------------------------------

# load_pipeline lives with the rest of model loading; these names stay importable from here.
from paddiff.loader import (  # noqa: E402, F401
    EMBEDDED_MODEL_NAME,
    embedded_model_path,
    load_pipeline,
)
