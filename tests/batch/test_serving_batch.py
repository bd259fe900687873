"""Dynamic batching of serving requests (paddiff.serving_batch, no Ray): compatible requests
share one pipeline call, each gets the images it would get alone, and a bad request gets the
error `hub serving` gives without failing its neighbours."""

from __future__ import annotations

import base64
import io

import numpy as np
import paddiff
import pytest
from paddiff.serving import ServingLimits
from paddiff.serving_batch import BatchingServer
from PIL import Image

STEPS = 4


@pytest.fixture(scope="module")
def pipeline():
    """The embedded model with the shipped safety filters, as `paddiff serve --ray` loads it."""
    from paddiff.safety import load_filters

    return paddiff.load_pipeline(safety_filters=load_filters(None))


@pytest.fixture()
def server(pipeline):
    return BatchingServer(pipeline, ServingLimits(), max_images=8)


def decode(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("RGB"))


def alone(pipeline, prompt, seed, count=1, negative=None, **settings) -> list[np.ndarray]:
    """What the PaddleHub module's `serve` would return for the request: one pipeline call."""
    result = pipeline.text_to_image(
        prompt,
        negative,
        seed=seed,
        num_images_per_prompt=count,
        steps=settings.pop("steps", STEPS),
        progress=False,
        **settings,
    )
    return [np.asarray(image) for image in result.images]


def test_compatible_requests_share_one_call_with_the_images_each_gets_alone(pipeline, server):
    requests = [
        {"prompt": "a red circle on a blue background", "seed": 3, "steps": STEPS},
        {"prompt": "蓝色背景上的一个黄色星形", "seed": 9, "num_images": 2, "steps": STEPS},
        {"prompt": "a green square", "negative_prompt": "blue", "seed": 1, "steps": STEPS},
        {"prompt": "a red circle on a blue background", "seed": 3, "steps": STEPS + 1},
        {"prompt": "a red circle", "steps": 1000},
        {"prompt": "a scene full of gore", "steps": STEPS},
    ]
    items = [server.prepare(fields) for fields in requests]
    assert server.groups(items) == [[0, 1, 2], [3]]  # 4 and 5 were refused on arrival
    replies = server.run(items)
    assert [reply["status"] for reply in replies] == ["000"] * 4 + ["101"] * 2
    assert replies[4] == {
        "status": "101",
        "msg": "invalid request: 'steps' must be between 1 and 50, got 1000",
        "results": "",
    }
    assert replies[5]["msg"] == "the prompt was refused by the safety filter (category: violence)"
    for reply in replies[:3]:
        assert reply["results"]["batch"] == {"requests": 3, "images": 4}
    assert replies[3]["results"]["batch"] == {"requests": 1, "images": 1}
    expected = [
        alone(pipeline, "a red circle on a blue background", 3),
        alone(pipeline, "蓝色背景上的一个黄色星形", 9, count=2),
        alone(pipeline, "a green square", 1, negative="blue"),
        alone(pipeline, "a red circle on a blue background", 3, steps=STEPS + 1),
    ]
    for reply, wanted, fields in zip(replies, expected, requests, strict=False):
        images = reply["results"]["images"]
        assert [item["seed"] for item in images] == [fields["seed"] + i for i in range(len(wanted))]
        for item, image in zip(images, wanted, strict=True):
            assert np.array_equal(decode(item["image"]), image)  # bit for bit
            assert item["settings"]["prompt"] == fields["prompt"]
            assert item["settings"]["negative_prompt"] == fields.get("negative_prompt")
            assert item["settings"]["steps"] == fields["steps"]
        assert all(v["allowed"] for v in reply["results"]["prompt_verdicts"])
    assert not np.array_equal(expected[0][0], expected[3][0])  # steps matter: not batched


def test_prompt_warnings_are_each_requests_own(pipeline, server):
    prompts = ["a red circle", "a purple zebra on a blue background"]
    replies = server.run([server.prepare({"prompt": p, "steps": 1, "seed": 1}) for p in prompts])
    for prompt, reply in zip(prompts, replies, strict=True):
        alone_result = pipeline.text_to_image(prompt, steps=1, seed=1, progress=False)
        assert reply["results"]["prompt_warnings"] == alone_result.prompt_warnings
    assert replies[1]["results"]["prompt_warnings"]  # the embedded model never learnt "zebra"


def test_random_seeds_are_fixed_on_arrival_and_reported(pipeline, server):
    items = [
        server.prepare({"prompt": "a yellow star", "steps": STEPS, "num_images": 2}),
        server.prepare({"prompt": "a red circle", "steps": STEPS}),
    ]
    replies = server.run(items)
    assert replies[0]["results"]["batch"]["requests"] == 2
    first = replies[0]["results"]["images"]
    seeds = [item["seed"] for item in first]
    assert len(set(seeds)) == 2  # random, one per image, as the pipeline draws them alone
    assert np.array_equal(decode(first[1]["image"]), alone(pipeline, "a yellow star", seeds[1])[0])


def test_groups_keep_incompatible_and_oversized_requests_apart(server):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    picture = base64.b64encode(buffer.getvalue()).decode()
    requests = [
        {"prompt": "a", "steps": STEPS, "num_images": 4},
        {"prompt": "b", "steps": STEPS, "num_images": 4},
        {"prompt": "c", "steps": STEPS, "num_images": 1},  # 4 + 4 + 1 > 8: a new group
        {"prompt": "d", "steps": STEPS, "guidance_scale": 3},
        {"prompt": "e", "steps": STEPS, "scheduler": "euler-a"},
        {"prompt": "f", "steps": STEPS, "image": picture, "strength": 0.5},  # alone
        {"prompt": "g", "steps": STEPS, "width": 48},
        {"prompt": "h", "steps": STEPS, "num_images": 1},
    ]
    items = [server.prepare(fields) for fields in requests]
    assert not any(isinstance(item, dict) for item in items)
    assert server.groups(items) == [[0, 1], [2, 7], [3], [4], [5], [6]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [],
            "paddiff serve runs on Ray Serve: give --ray (see docs/batch.md); for one process "
            "use `hub serving start -m paddiff` (docs/serving.md)",
        ),
        (["--ray", "--replicas", "0"], "--replicas must be at least 1"),
        (["--ray", "--port", "70000"], "--port must be between 1 and 65535, got 70000"),
        (["--ray", "--model", "/no/such/model"], "model not found: /no/such/model"),
    ],
)
def test_serve_command_errors_are_one_line(argv, message, capsys):
    from paddiff.cli import main

    assert main(["serve", *argv]) == 1
    assert capsys.readouterr().err == f"paddiff: error: {message}\n"


def test_requests_with_different_loras_never_share_a_call_or_leak(pipeline, tmp_path):
    from support.lora_files import write_peft_lora

    write_peft_lora(tmp_path / "warm.safetensors", seed=1)
    write_peft_lora(tmp_path / "cold.safetensors", seed=2)
    server = BatchingServer(pipeline, ServingLimits(lora_dirs=(str(tmp_path),)))
    base = {"prompt": "a red circle", "seed": 2, "steps": STEPS}
    requests = [
        dict(base, loras=["warm"]),
        dict(base, loras=["cold:0.5"]),
        dict(base, prompt="a red circle <lora:warm:1>"),  # the same LoRA as the first
        base,
    ]
    items = [server.prepare(fields) for fields in requests]
    assert server.groups(items) == [[0, 2], [1], [3]]
    replies = server.run(items)
    got = [decode(reply["results"]["images"][0]["image"]) for reply in replies]
    assert np.array_equal(got[0], got[2])
    assert np.array_equal(got[3], alone(pipeline, "a red circle", 2)[0])  # none left enabled
    fresh = paddiff.load_pipeline()
    fresh.load_lora_weights(tmp_path / "cold.safetensors", scale=0.5)
    assert np.array_equal(got[1], alone(fresh, "a red circle", 2)[0])
    assert not np.array_equal(got[0], got[3]) and not np.array_equal(got[1], got[3])


def test_requests_with_control_nets_run_alone_with_their_own_nets():
    """`paddiff serve --ray` takes hub serving's "controlnets": each controlled request runs
    alone, with exactly its nets, and gets the image hub serving's call gives (the size, when
    not given, is the control image's)."""
    from support.fixture_configs import FIXTURES

    control = FIXTURES / "controlnet"
    pipe = paddiff.load_pipeline(FIXTURES / "sd" / "sd1")
    server = BatchingServer(pipe, ServingLimits(controlnet_dirs=(str(control),)))
    hint = np.zeros((24, 24, 3), np.uint8)
    hint[4:20, 8:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(hint).save(buffer, format="PNG")
    hint64 = base64.b64encode(buffer.getvalue()).decode()
    base = {"prompt": "a red circle", "steps": 2}
    requests = [
        dict(base, seed=1, controlnets=[{"name": "cn_a", "image": hint64, "scale": 0.7}]),
        dict(base, seed=1),
        dict(base, seed=2),
        dict(base, seed=1, guess_mode=True, controlnets=[{"name": "cn_b", "image": hint64}]),
    ]
    items = [server.prepare(fields) for fields in requests]
    assert server.groups(items) == [[0], [1, 2], [3]]
    replies = server.run(items)
    assert [reply["status"] for reply in replies] == ["000"] * 4, replies
    got = [decode(reply["results"]["images"][0]["image"]) for reply in replies]

    def direct(seed, nets=(), **control_settings):
        pipe.load_controlnet([control / net for net in nets])
        result = pipe.text_to_image("a red circle", steps=2, seed=seed, progress=False,
                                    **control_settings)  # fmt: skip
        return np.asarray(result.images[0])

    hint_image = Image.fromarray(hint)
    assert got[0].shape == (24, 24, 3)  # the control image's size
    assert np.array_equal(
        got[0], direct(1, ["cn_a"], control_image=hint_image, controlnet_conditioning_scale=0.7)
    )
    assert np.array_equal(got[1], direct(1)) and np.array_equal(got[2], direct(2))
    assert np.array_equal(got[3], direct(1, ["cn_b"], control_image=hint_image, guess_mode=True))
    settings = [reply["results"]["images"][0]["settings"] for reply in replies]
    assert "Model: cn_a [" in settings[0]["controlnet_0"] and "controlnet_0" not in settings[1]
    assert settings[3]["control_mode"] == "ControlNet is more important"
    refused = server.prepare(dict(base, controlnets=[{"name": "nope", "image": hint64}]))
    assert refused["msg"].startswith("invalid request: no control net named 'nope'; available:")
