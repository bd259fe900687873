"""The generation loop, on small NumPy components: reproducibility, guidance batching, modes."""

from __future__ import annotations

import numpy as np
import paddiff
import pytest
from paddiff.randomness import Generator, RecordedNoise
from paddiff.results import GenerationCancelled
from paddiff.safety import SafetyBlocked, SafetyFilters
from PIL import Image

from support.pipeline_toys import ToyQuietScheduler, ToyScheduler, ToyWordFilter, toy_pipeline

FAST = dict(steps=4, progress=False)


@pytest.fixture()
def toy_schedulers():
    paddiff.register("schedulers", "ToyScheduler", ToyScheduler, replace=True)
    paddiff.register("schedulers", "ToyQuietScheduler", ToyQuietScheduler, replace=True)
    yield
    paddiff.registry.default_registry().unregister("schedulers", "ToyScheduler")
    paddiff.registry.default_registry().unregister("schedulers", "ToyQuietScheduler")


def pixels(image) -> np.ndarray:
    return np.asarray(image)


def test_same_seed_gives_identical_pixels_run_after_run():
    first = toy_pipeline().text_to_image("a red cat", seed=42, **FAST).images[0]
    second = toy_pipeline().text_to_image("a red cat", seed=42, **FAST).images[0]
    other = toy_pipeline().text_to_image("a red cat", seed=43, **FAST).images[0]
    assert pixels(first).tobytes() == pixels(second).tobytes()
    assert pixels(first).tobytes() != pixels(other).tobytes()


def test_image_of_a_batch_equals_its_seed_alone():
    pipe = toy_pipeline()
    batch = pipe.text_to_image(
        ["a red cat", "a blue dog"], num_images_per_prompt=2, seed=[7, 8, 9, 10], **FAST
    )
    assert [s["prompt"] for s in batch.settings] == ["a red cat"] * 2 + ["a blue dog"] * 2
    assert [s["seed"] for s in batch.settings] == [7, 8, 9, 10]
    for image, settings in zip(batch.images, batch.settings, strict=True):
        alone = pipe.text_to_image(settings["prompt"], seed=settings["seed"], **FAST).images[0]
        assert pixels(image).tobytes() == pixels(alone).tobytes()


def test_one_seed_numbers_the_batch_and_random_seeds_are_recorded():
    pipe = toy_pipeline()
    assert [
        s["seed"] for s in pipe.text_to_image("x", seed=5, num_images_per_prompt=3, **FAST).settings
    ] == [5, 6, 7]
    result = pipe.text_to_image("x", num_images_per_prompt=2, **FAST)
    seeds = [s["seed"] for s in result.settings]
    assert all(isinstance(s, int) for s in seeds) and seeds[0] != seeds[1]
    again = pipe.text_to_image("x", seed=seeds[1], **FAST).images[0]
    assert pixels(again).tobytes() == pixels(result.images[1]).tobytes()


@pytest.mark.parametrize("guidance, batch", [(7.5, 6), (1.0, 3), (0.0, 3)])
def test_guidance_batches_both_passes_into_one_denoiser_call(guidance, batch):
    pipe = toy_pipeline(denoiser_batch_size=None)  # all images in one call
    pipe.text_to_image("a cat", guidance_scale=guidance, num_images_per_prompt=3, seed=1, **FAST)
    assert len(pipe.denoiser.calls) == FAST["steps"]
    assert all(latents[0] == batch and cond[0] == batch for latents, cond in pipe.denoiser.calls)


@pytest.mark.parametrize("guidance, batch", [(7.5, 2), (1.0, 1)])
def test_by_default_each_image_gets_its_own_denoiser_call(guidance, batch):
    pipe = toy_pipeline()
    pipe.text_to_image("a cat", guidance_scale=guidance, num_images_per_prompt=3, seed=1, **FAST)
    assert len(pipe.denoiser.calls) == 3 * FAST["steps"]
    assert all(latents[0] == batch and cond[0] == batch for latents, cond in pipe.denoiser.calls)


def test_guidance_mixes_the_two_passes():
    pipe = toy_pipeline()
    scale = pipe.text_to_image("a cat", guidance_scale=3.0, seed=1, **FAST).images[0]
    plain = pipe.text_to_image("a cat", guidance_scale=1.0, seed=1, **FAST).images[0]
    assert pixels(scale).tobytes() != pixels(plain).tobytes()


def test_denoiser_batch_size_splits_calls_without_changing_pixels():
    pipe = toy_pipeline(denoiser_batch_size=None)
    whole = pipe.text_to_image("a cat", num_images_per_prompt=3, seed=1, **FAST)
    pipe.denoiser_batch_size = 2
    pipe.denoiser.calls.clear()
    split = pipe.text_to_image("a cat", num_images_per_prompt=3, seed=1, **FAST)
    assert [shape[0] for shape, _ in pipe.denoiser.calls[:2]] == [4, 2]
    assert len(pipe.denoiser.calls) == 2 * FAST["steps"]
    for a, b in zip(whole.images, split.images, strict=True):
        assert pixels(a).tobytes() == pixels(b).tobytes()


def test_repeated_prompt_skips_the_text_encoder():
    pipe = toy_pipeline()
    pipe.text_to_image("a cat", negative_prompt="blurry", seed=1, **FAST)
    assert pipe.text_encoder.encoded == ["a cat", "blurry"]
    assert (pipe.prompt_cache.hits, pipe.prompt_cache.misses) == (0, 1)
    pipe.text_to_image("a cat", negative_prompt="blurry", seed=2, num_images_per_prompt=2, **FAST)
    assert pipe.text_encoder.encoded == ["a cat", "blurry"]
    assert (pipe.prompt_cache.hits, pipe.prompt_cache.misses) == (2, 1)
    pipe.text_to_image("a cat", negative_prompt="ugly", seed=1, **FAST)  # new key
    assert pipe.text_encoder.encoded[-2:] == ["a cat", "ugly"]


def test_prompt_cache_is_bounded_and_evicts_the_least_recently_used():
    pipe = toy_pipeline(prompt_cache=paddiff.PromptCache(max_entries=2))
    for prompt in ("one", "two", "one", "three"):
        pipe.text_to_image(prompt, guidance_scale=1.0, seed=1, **FAST)
    assert len(pipe.prompt_cache) == 2
    pipe.text_encoder.encoded.clear()
    pipe.text_to_image("one", guidance_scale=1.0, seed=1, **FAST)  # kept: used after "two"
    pipe.text_to_image("two", guidance_scale=1.0, seed=1, **FAST)  # evicted
    assert pipe.text_encoder.encoded == ["two"]


def test_long_prompt_is_truncated_with_a_warning(recwarn):
    pipe = toy_pipeline()  # the toy encoder reads 6 words
    pipe.text_to_image("one two three four five six", seed=1, **FAST)
    assert not [w for w in recwarn if w.category is paddiff.PromptTruncatedWarning]
    with pytest.warns(paddiff.PromptTruncatedWarning, match="7 tokens but .* only 6"):
        pipe.text_to_image("one two three four five six seven", seed=1, **FAST)


def test_callback_sees_every_step_and_can_cancel():
    pipe = toy_pipeline()
    seen = []
    pipe.text_to_image("a cat", seed=1, callback=seen.append, **FAST)
    assert [info.step for info in seen] == [0, 1, 2, 3]
    assert seen[0].total_steps == 4 and seen[0].latents.shape == (1, 4, 4, 4)
    pipe.denoiser.calls.clear()
    with pytest.raises(GenerationCancelled, match="after step 1"):
        pipe.text_to_image("a cat", seed=1, callback=lambda info: info.step < 1, **FAST)
    assert len(pipe.denoiser.calls) == 2
    assert pipe.vae.decoded_batches == [1]  # only the first run decoded


def test_progress_bar_can_be_switched_off(capsys):
    pipe = toy_pipeline()
    pipe.text_to_image("a cat", seed=1, steps=3)
    assert "3/3" in capsys.readouterr().err
    pipe.text_to_image("a cat", seed=1, steps=3, progress=False)
    assert capsys.readouterr().err == ""


def test_scheduler_override_per_call_keeps_the_loaded_one(toy_schedulers):
    pipe = toy_pipeline()
    default = pipe.text_to_image("a cat", seed=1, **FAST)
    quiet = pipe.text_to_image("a cat", seed=1, scheduler="ToyQuietScheduler", **FAST)
    assert quiet.settings[0]["scheduler"] == "ToyQuietScheduler"
    assert pixels(quiet.images[0]).tobytes() != pixels(default.images[0]).tobytes()
    assert type(pipe.scheduler) is ToyScheduler
    again = pipe.text_to_image("a cat", seed=1, **FAST)
    assert pixels(again.images[0]).tobytes() == pixels(default.images[0]).tobytes()
    swapped = pipe.with_components(scheduler="ToyQuietScheduler")
    assert swapped.denoiser is pipe.denoiser and swapped.prompt_cache is pipe.prompt_cache
    same = swapped.text_to_image("a cat", seed=1, **FAST)
    assert pixels(same.images[0]).tobytes() == pixels(quiet.images[0]).tobytes()


def test_precomputed_embeddings_give_the_same_image():
    pipe = toy_pipeline()
    by_text = pipe.text_to_image("a cat", negative_prompt="dull", seed=3, **FAST)
    cond = pipe.text_encoder.encode(["a cat"])
    uncond = pipe.text_encoder.encode(["dull"])
    by_embeds = pipe.text_to_image(
        prompt_embeds=cond, negative_prompt_embeds=uncond, seed=3, **FAST
    )
    assert pixels(by_text.images[0]).tobytes() == pixels(by_embeds.images[0]).tobytes()


def test_given_latents_are_scaled_and_used():
    pipe = toy_pipeline()
    noise = Generator(11).randn((1, 4, 4, 4))
    quiet = ToyQuietScheduler({})  # no step noise: the seed only makes the initial latents
    by_seed = pipe.text_to_image("a cat", seed=11, scheduler=quiet, **FAST)
    by_latents = pipe.text_to_image("a cat", seed=11, scheduler=quiet, latents=noise, **FAST)
    assert pixels(by_seed.images[0]).tobytes() == pixels(by_latents.images[0]).tobytes()


def test_image_to_image_runs_the_strength_fraction_of_steps():
    pipe = toy_pipeline()
    source = Image.new("RGB", (32, 32), (200, 30, 30))
    result = pipe.image_to_image("a cat", source, strength=0.5, seed=1, steps=10, progress=False)
    assert len(pipe.denoiser.calls) == 5
    assert result.settings[0]["strength"] == 0.5 and result.settings[0]["mode"] == "img2img"
    again = pipe.image_to_image("a cat", source, strength=0.5, seed=1, steps=10, progress=False)
    assert pixels(result.images[0]).tobytes() == pixels(again.images[0]).tobytes()


def test_image_to_image_draws_posterior_then_latent_noise():
    pipe = toy_pipeline()
    source = Image.new("RGB", (32, 32), (0, 128, 255))
    shape = (1, 4, 4, 4)
    posterior, noise, step_noise = (np.full(shape, v, np.float32) for v in (0.0, 0.5, 0.0))
    recorded = RecordedNoise([posterior, noise] + [step_noise] * 2)
    pipe.image_to_image("a cat", source, strength=0.5, seed=recorded, steps=4, progress=False)
    image_latents = (
        pipe.vae.encode(np.asarray(source, np.float32)[None].transpose(0, 3, 1, 2) / 127.5 - 1)
        * 0.5
    )
    first_input = pipe.denoiser.inputs[0][1:2]  # the conditional half, scaled by 0.9
    # 4 steps at strength 0.5 run the last two timesteps of [999, 666, 333, 0].
    expected = ToyScheduler({}).add_noise(image_latents, noise, np.array([333]))
    np.testing.assert_allclose(first_input / 0.9, expected, rtol=1e-5)


def test_inpaint_with_a_plain_unet_keeps_the_unmasked_part():
    pipe = toy_pipeline()
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255  # repaint the right half
    result = pipe.inpaint("a cat", source, Image.fromarray(mask), seed=1, **FAST)
    roundtrip = pipe.vae.decode(
        pipe.vae.encode(
            np.asarray(source, np.float32)[None].transpose(0, 3, 1, 2) / 127.5 - 1, Generator(1)
        )
    )
    kept = np.round(np.clip(roundtrip[0].transpose(1, 2, 0) / 2 + 0.5, 0, 1) * 255)
    out = pixels(result.images[0]).astype(np.float64)
    np.testing.assert_array_equal(out[:, :16], kept[:, :16])
    assert np.abs(out[:, 16:] - kept[:, 16:]).max() > 10


def test_inpaint_with_an_inpainting_unet_passes_mask_and_masked_image():
    pipe = toy_pipeline(in_channels=9)
    source = Image.new("RGB", (32, 32), (255, 255, 255))
    mask = np.zeros((32, 32), np.uint8)
    mask[:16] = 255  # repaint the top half
    pipe.inpaint("a cat", source, mask, seed=1, guidance_scale=1.0, **FAST)
    first = pipe.denoiser.inputs[0]
    assert first.shape == (1, 9, 4, 4)
    np.testing.assert_array_equal(first[0, 4], np.repeat([[1.0], [1.0], [0.0], [0.0]], 4, 1))
    masked_latents = first[0, 5:]  # blanked top (0 -> latents ~0), white bottom (~0.5 each)
    assert np.abs(masked_latents[:, :2]).max() < 0.5 and masked_latents[:, 2:].min() > 0.1


def test_safety_filters_block_prompts_before_encoding_and_record_image_verdicts():
    pipe = toy_pipeline(safety_filters=[ToyWordFilter()])
    with pytest.raises(SafetyBlocked, match="negative prompt was refused by the safety filter"):
        pipe.text_to_image("a cat", negative_prompt="forbidden fruit", seed=1, **FAST)
    assert pipe.text_encoder.encoded == [] and pipe.denoiser.calls == []
    result = pipe.text_to_image("a cat", num_images_per_prompt=2, seed=1, **FAST)
    assert [v.allowed for v in result.verdicts] == [True, True]
    assert [v.allowed for v in result.prompt_verdicts] == [True]  # one prompt, checked once
    strict = pipe.with_components(safety_filters=[ToyWordFilter(brightness=0.0)])
    blocked = strict.text_to_image("a cat", seed=1, **FAST)
    assert blocked.verdicts[0].allowed is False
    assert pixels(blocked.images[0]).max() == 0
    assert pipe.text_to_image("a cat", seed=1, **FAST).verdicts[0].allowed  # pipe unchanged


def test_a_configured_group_of_filters_is_used_as_it_is():
    group = SafetyFilters(prompt_filters=[ToyWordFilter()], check_negative_prompt=False)
    pipe = toy_pipeline(safety_filters=group)
    assert pipe.safety is group
    pipe.text_to_image("a cat", "forbidden", seed=1, **FAST)  # negative prompts unchecked here
    with pytest.raises(SafetyBlocked, match="the prompt was refused"):
        pipe.text_to_image("forbidden cat", seed=1, **FAST)
