"""`SDXLPipeline`: text-to-image, image-to-image and inpainting with SDXL base or refiner.

It is `paddiff.Pipeline` with SDXL's conditioning (both text encoders, the pooled embedding,
micro-conditioning; see `paddiff.sdxl.conditioning`) and diffusers' "ensemble of expert
denoisers" hand-off between base and refiner:

    latents = base.text_to_image(prompt, denoising_end=0.8, output_type="latent").images
    image = refiner.image_to_image(prompt, image=latents, denoising_start=0.8).images[0]

`denoising_end` stops the run once the timesteps fall below (1 - denoising_end) of the
training range, and `output_type="latent"` returns the latents as they are then (not
decoded); `denoising_start` starts where such a run stopped, from given latents or an image's,
with no noise added. Both are fractions of the training timesteps, as in diffusers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from paddiff import images as imageio
from paddiff import validation as check
from paddiff.modes import Start, encode
from paddiff.pipeline import Pipeline
from paddiff.prompts import warn_if_truncated
from paddiff.request import Request, build_request
from paddiff.results import GenerationResult
from paddiff.sdxl.conditioning import Micro, XLConditioning, XLGuidedNetwork
from paddiff.sdxl.plans import ending_plan, starting_plan
from paddiff.validation import ValidationError

OUTPUT_TYPES = ("pil", "latent")


@dataclasses.dataclass(frozen=True)
class XLRequest(Request):
    """A `Request` with SDXL's settings."""

    micro: Micro = Micro()
    denoising_start: float | None = None
    denoising_end: float | None = None
    output_type: str = "pil"
    given_latents: np.ndarray | None = None  # image_to_image(image=latents)


class SDXLPipeline(Pipeline):
    """SDXL base or refiner. Every mode also takes diffusers' SDXL settings: original_size,
    crops_coords_top_left, target_size, negative_original_size,
    negative_crops_coords_top_left, negative_target_size, aesthetic_score and
    negative_aesthetic_score (refiner), denoising_start, denoising_end and output_type
    ("pil" or "latent")."""

    guided_network = XLGuidedNetwork

    def text_to_image(
        self, prompt=None, negative_prompt=None, *, progress=True, callback=None, **settings
    ) -> GenerationResult:
        xl = _xl_settings(settings)
        if xl["denoising_start"] is not None:
            raise ValidationError("denoising_start applies to image_to_image (the refiner)")
        request = build_request(self, "txt2img", prompt, negative_prompt, settings)
        return self._generate(_with(request, xl), progress, callback)

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
        """`image` may be latents (images, 4, h, w), e.g. the base's output_type="latent"
        result: they are used as they are (with denoising_start), not encoded."""
        xl = _xl_settings(settings)
        if _is_latents(image, self.vae):
            latents = np.asarray(image, np.float32)
            f = self.vae_factor
            settings.setdefault("height", latents.shape[2] * f)
            settings.setdefault("width", latents.shape[3] * f)
            request = build_request(self, "txt2img", prompt, negative_prompt, settings)
            if len(latents) not in (1, request.count):
                raise ValidationError(
                    f"{len(latents)} latents given for {request.count} images; give one or "
                    "one per image"
                )
            expected = (request.height // f, request.width // f)
            if latents.shape[2:] != expected:
                raise ValidationError(
                    f"latents of size {latents.shape[2:]} do not fit a "
                    f"{request.width}x{request.height} image"
                )
            latents = np.broadcast_to(latents, (request.count, *latents.shape[1:]))
            check.check_strength(strength)
            check.check_strength_leaves_a_step(strength, request.steps)
            request = dataclasses.replace(request, mode="img2img", strength=strength)
            xl["given_latents"] = np.ascontiguousarray(latents)
        else:
            settings["strength"] = strength
            request = build_request(self, "img2img", prompt, negative_prompt, settings, image)
        return self._generate(_with(request, xl), progress, callback)

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
        xl = _xl_settings(settings)
        settings["strength"] = strength
        request = build_request(
            self, "inpaint", prompt, negative_prompt, settings, image=image, mask_image=mask_image
        )
        return self._generate(_with(request, xl), progress, callback)

    def adapter_components(self) -> dict:
        """What LoRA files' component names mean here (kohya's lora_te1_ / lora_te2_ /
        lora_unet_, diffusers' text_encoder. / text_encoder_2. / unet.)."""
        encoders = self.text_encoder
        return {
            "unet": self.denoiser,
            "text_encoder": getattr(encoders, "first", encoders),
            "text_encoder_2": getattr(encoders, "second", None),
        }

    def load_textual_inversion(self, path, token=None):
        raise NotImplementedError("textual inversion is not supported for SDXL models yet")

    # -- the steps of one call that differ from SD 1.x / 2.x -------------------------------

    def _plan(self, request):
        if request.denoising_start is not None:
            plan = starting_plan(request.scheduler, request.steps, request.denoising_start)
        else:
            plan = super()._plan(request)
        if request.denoising_end is not None:
            plan = ending_plan(plan, request.denoising_end)
        return plan

    def _start(self, request, plan, noise):
        given = request.given_latents
        if request.denoising_start is None and given is not None:  # noised to the strength
            return Start(plan.noised(given, noise(given.shape), plan.start))
        if request.denoising_start is None:
            return super()._start(request, plan, noise)
        if request.mode == "inpaint":
            raise ValidationError("denoising_start is supported by image_to_image only")
        # diffusers adds no noise: the latents are where an earlier run stopped
        if request.given_latents is not None:
            return Start(request.given_latents)
        pixels = imageio.image_to_array(request.image, request.width, request.height)
        return Start(encode(self, pixels, noise))

    def _finish(
        self, request, latents, prompt_verdicts, notes=(), guidance=None
    ) -> GenerationResult:
        if request.output_type == "latent":
            settings = [self._settings(request, i, guidance) for i in range(request.count)]
            return GenerationResult(latents, settings, [], prompt_verdicts, list(notes))
        return super()._finish(request, latents, prompt_verdicts, notes, guidance)

    def _conditioning(self, request) -> tuple[list, list]:
        if request.prompt_embeds is not None or request.negative_prompt_embeds is not None:
            raise ValidationError(
                "prompt_embeds / negative_prompt_embeds are not supported for SDXL models yet "
                "(they also need pooled embeddings); give prompts"
            )
        cond_ids, uncond_ids = request.micro.time_ids(
            request.height, request.width, self._aesthetic(), request.mode == "txt2img"
        )
        conds, unconds = [], []
        for prompt, negative in zip(request.prompts, request.negative_prompts, strict=True):
            (hidden, pooled), negative_pair = self._encode_pair(prompt, negative, request.guided)
            conds.append(XLConditioning(hidden, pooled, cond_ids))
            if negative_pair is not None:
                unconds.append(XLConditioning(*negative_pair, uncond_ids))
        return conds, unconds

    def _encode_pair(self, prompt, negative, guided):
        """((hidden, pooled) of the prompt, of the negative prompt or None), cached."""
        encoder = self.text_encoder
        key = ("sdxl", encoder, prompt, negative if guided else None, guided, self.long_prompts)
        cached = self.prompt_cache.get(key)
        if cached is not None:
            return cached
        if self.long_prompts:
            value = self._encode_weighted_pair(prompt, negative, guided)
            self.prompt_cache.put(key, value)
            return value
        warn_if_truncated(encoder, prompt)
        cond = encoder.encode_with_pooled([prompt])
        uncond = None
        if guided:
            if negative is None:
                uncond = encoder.unconditional_with_pooled(1)
            else:
                uncond = encoder.encode_with_pooled([negative])
        value = (cond, uncond)
        self.prompt_cache.put(key, value)
        return value

    def _encode_weighted_pair(self, prompt, negative, guided):
        from paddiff.prompt_weighting import pad_to_same_length

        encoder = self.text_encoder
        cond = encoder.encode_weighted_with_pooled(prompt)
        if not guided:
            return cond, None
        empty = encoder.unconditional_with_pooled(1)  # zeros for the base, as diffusers
        uncond = empty if negative is None else encoder.encode_weighted_with_pooled(negative)
        hidden, negative_hidden = pad_to_same_length(cond[0], uncond[0], empty[0])
        return (hidden, cond[1]), (negative_hidden, uncond[1])

    def _aesthetic(self) -> bool:
        """Whether the UNet reads the refiner's time ids (with an aesthetic score): 5 numbers
        instead of 6 (diffusers' requires_aesthetics_score)."""
        config = getattr(self.denoiser, "config", None) or {}
        total = config.get("projection_class_embeddings_input_dim")
        width = config.get("addition_time_embed_dim")
        pooled = getattr(self.text_encoder, "pooled_size", None)
        if not (total and width and pooled):
            return False
        return (int(total) - int(pooled)) // int(width) == 5

    def _settings(self, request, i: int, guidance=None) -> dict:
        settings = super()._settings(request, i, guidance)
        for name in ("denoising_start", "denoising_end"):
            if getattr(request, name) is not None:
                settings[name] = getattr(request, name)
        return settings


def _xl_settings(settings: dict) -> dict:
    """Take SDXL's settings out of `settings` (the rest goes to build_request), checked."""
    xl = {"micro": Micro.from_settings(settings)}
    for name in ("denoising_start", "denoising_end"):
        value = settings.pop(name, None)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1
        ):
            raise ValidationError(f"{name} must be a fraction between 0 and 1, got {value!r}")
        xl[name] = None if value is None else float(value)
    output_type = settings.pop("output_type", "pil")
    if output_type not in OUTPUT_TYPES:
        raise ValidationError(
            f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}"
        )
    xl["output_type"] = output_type
    return xl


def _with(request: Request, xl: dict) -> XLRequest:
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(Request)}
    return XLRequest(**fields, **xl)


def _is_latents(image, vae) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.ndim == 4
        and image.shape[1] == int(vae.latent_channels)
    )
