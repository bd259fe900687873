"""Batch jobs with control nets (the tiny SD 1.x fixture and its diffusers-made control nets):
names resolve in the control-net folder, paths and images from the job file; each job gets
exactly its nets, each net is loaded once per worker, and the images equal the Python API's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import paddiff
import pytest
from paddiff import batch
from paddiff.batch import JobError, parse_job
from paddiff.png_info import read_parameters
from PIL import Image

from support.fixture_configs import FIXTURES

STEPS = 2
PROMPT = "a red circle"
SD1 = FIXTURES / "sd" / "sd1"
CONTROL = FIXTURES / "controlnet"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A job folder with two control images and a control net beside the job file; the
    fixture folder of control nets is the operator's control-net folder."""
    root = tmp_path_factory.mktemp("control-jobs")
    square = np.zeros((32, 32, 3), np.uint8)
    square[8:24, 8:24] = 255
    Image.fromarray(square).save(root / "square.png")
    bar = np.zeros((32, 32, 3), np.uint8)
    bar[4:28, 12:20] = 255
    Image.fromarray(bar).save(root / "bar.png")
    shutil.copy(CONTROL / "cn_a_original.safetensors", root / "local_net.safetensors")
    return root


def job(job_id, **fields) -> dict:
    return {"id": job_id, "prompt": PROMPT, "seed": 3, "steps": STEPS, "model": str(SD1), **fields}


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_control_jobs_equal_the_python_api_and_record_their_settings(folder, monkeypatch):
    jobs_path, out = folder / "jobs.jsonl", folder / "out"
    a = {"name": "cn_a", "image": "square.png", "scale": 0.8, "end": 0.6}
    jobs = [
        job("a", controlnets=[a]),
        job("plain"),
        job("b-canny", controlnets=[{"name": "cn_b", "image": "bar.png", "preprocessor": "canny"}]),
        job("a-again", seed=4, controlnets=[a]),
        job(
            "two-guess",
            controlnets=[a, {"path": "local_net.safetensors", "image": "bar.png", "scale": 0.5}],
            guess_mode=True,
        ),
    ]
    jobs_path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    loads = []
    original = paddiff.Pipeline.load_controlnet

    def counting(pipe, controlnet, *args, **kwargs):
        items = controlnet if isinstance(controlnet, list) else [controlnet]
        loads.extend(str(item) for item in items if not hasattr(item, "base_architecture"))
        return original(pipe, controlnet, *args, **kwargs)

    monkeypatch.setattr(paddiff.Pipeline, "load_controlnet", counting)
    runner = batch.TaskRunner(out)  # one process, one pipeline for every job
    summary = batch.run_batch(
        jobs_path, out, batch.run_here(runner), progress=False, controlnet_dir=CONTROL
    )
    assert summary.written == len(jobs) and not summary.failed_jobs and not summary.bad_lines
    # each net read from disk once, though cn_a serves three jobs
    assert sorted(loads) == sorted(
        [str(CONTROL / "cn_a"), str(CONTROL / "cn_b"), str(folder / "local_net.safetensors")]
    )
    monkeypatch.undo()
    lines = {m["id"]: m for m in map(json.loads, (out / "metadata.jsonl").read_text().splitlines())}

    from paddiff.safety import load_filters

    pipe = paddiff.load_pipeline(SD1, safety_filters=load_filters(None, model_dir=SD1))

    def direct(nets, seed=3, **control):
        if nets:
            pipe.load_controlnet(nets)
        else:
            pipe.unload_controlnet()
        result = pipe.text_to_image(PROMPT, steps=STEPS, seed=seed, progress=False, **control)
        return np.asarray(result.images[0])

    square, bar = folder / "square.png", folder / "bar.png"
    expected = {
        "a": direct(
            [CONTROL / "cn_a"],
            control_image=square,
            controlnet_conditioning_scale=0.8,
            control_guidance_end=0.6,
        ),
        "plain": direct([]),
        "b-canny": direct([CONTROL / "cn_b"], control_image=bar, control_preprocessor="canny"),
        "a-again": direct(
            [CONTROL / "cn_a"],
            seed=4,
            control_image=square,
            controlnet_conditioning_scale=0.8,
            control_guidance_end=0.6,
        ),
        "two-guess": direct(
            [CONTROL / "cn_a", folder / "local_net.safetensors"],
            control_image=[square, bar],
            controlnet_conditioning_scale=[0.8, 0.5],
            control_guidance_end=[0.6, 1.0],
            guess_mode=True,
        ),
    }
    for name, image in expected.items():
        assert np.array_equal(pixels(out / lines[name]["file"]), image), name
    assert not np.array_equal(expected["a"], expected["plain"])  # the net does something

    parameters = read_parameters(out / lines["two-guess"]["file"])
    assert "Model: cn_a [" in parameters["ControlNet 0"]
    assert "Weight: 0.8" in parameters["ControlNet 0"]
    assert "Guidance End: 0.6" in parameters["ControlNet 0"]
    assert "Model: local_net [" in parameters["ControlNet 1"]
    assert parameters["Control Mode"] == "ControlNet is more important"
    assert "Module: canny" in read_parameters(out / lines["b-canny"]["file"])["ControlNet 0"]
    assert "ControlNet 0" not in read_parameters(out / lines["plain"]["file"])
    assert "controlnet_0" in lines["a"]["settings"]


def test_a_changed_control_image_or_scale_makes_the_job_again(folder):
    base = {"prompt": "x", "controlnets": [{"name": "cn_a", "image": "square.png"}]}
    plain = parse_job({"prompt": "x"}, 1, folder, controlnet_dirs=[CONTROL])
    first = parse_job(base, 1, folder, controlnet_dirs=[CONTROL])
    assert "controlnets" not in plain.settings()  # plain jobs keep their digests
    changed = [
        {"prompt": "x", "controlnets": [{"name": "cn_a", "image": "bar.png"}]},
        {"prompt": "x", "controlnets": [{"name": "cn_a", "image": "square.png", "scale": 0.5}]},
        {"prompt": "x", "controlnets": [{"name": "cn_b", "image": "square.png"}]},
        {**base, "guess_mode": True},
    ]
    digest = batch.unit_digest(first, 0, "m")
    for fields in changed:
        other = parse_job(fields, 1, folder, controlnet_dirs=[CONTROL])
        assert batch.unit_digest(other, 0, "m") != digest, fields
    # the same net named by path is the same net
    by_path = parse_job(
        {"prompt": "x", "controlnets": [{"path": str(CONTROL / "cn_a"), "image": "square.png"}]},
        1,
        folder,
    )
    assert batch.unit_digest(by_path, 0, "m") == digest


@pytest.mark.parametrize(
    "controls, message",
    [
        ([{"name": "missing", "image": "square.png"}], "'controlnets'[0].name: no control net"),
        ([{"name": "../cn_a", "image": "square.png"}], "not a path"),
        ([{"path": "nowhere", "image": "square.png"}], "'controlnets'[0].path: no control net"),
        ([{"name": "cn_a", "path": "x", "image": "square.png"}], '"name" or "path"'),
        ([{"name": "cn_a"}], "'controlnets'[0].image: the control image's path is required"),
        ([{"name": "cn_a", "image": "gone.png"}], "control image not found: gone.png"),
        (
            [{"name": "cn_a", "image": "square.png", "preprocessor": "cany"}],
            "'controlnets'[0].preprocessor: no preprocessor named 'cany'; known: canny",
        ),
        ([{"name": "cn_a", "image": "square.png", "scale": 7}], "scale must be a number in"),
        ([{"name": "cn_a", "image": "square.png", "start": 0.5, "end": 0.5}], "below end"),
        ([{"name": "cn_a", "image": "square.png", "weight": 1}], "unknown field(s) weight"),
        ([{"name": "cn_a", "image": "square.png"}] * 5, "lists 5 control nets; a job may use 4"),
        ("cn_a", "'controlnets' must be a list"),
    ],
)
def test_bad_control_units_name_the_unit_and_field(folder, controls, message):
    with pytest.raises(JobError) as error:
        parse_job({"prompt": "x", "controlnets": controls}, 1, folder, controlnet_dirs=[CONTROL])
    assert message in str(error.value)


def run_jobs(folder, name: str, lines: list[dict]):
    """Run a job file of `lines` in `folder` here; (summary, the errors.jsonl records)."""
    jobs_path, out = folder / f"{name}.jsonl", folder / f"{name}-out"
    jobs_path.write_text("".join(json.dumps(j) + "\n" for j in lines))
    summary = batch.run_batch(
        jobs_path,
        out,
        batch.run_here(batch.TaskRunner(out)),
        progress=False,
        controlnet_dir=CONTROL,
    )
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    return summary, errors


def test_bad_control_jobs_are_bad_lines_and_the_others_run(folder):
    lines = [
        job("good", controlnets=[{"name": "cn_a", "image": "square.png"}]),
        job("unknown-net", controlnets=[{"name": "nope", "image": "square.png"}]),
        job("guess-alone", guess_mode=True),
        job("no-image", controlnets=[{"name": "cn_a", "image": "gone.png"}]),
    ]
    summary, errors = run_jobs(folder, "bad", lines)
    assert summary.written == 1 and summary.bad_lines == 3
    assert [(e["line"], e["id"]) for e in errors] == [
        (2, "unknown-net"),
        (3, "guess-alone"),
        (4, "no-image"),
    ]
    assert "no control net named 'nope'; available: cn_a" in errors[0]["error"]
    assert errors[1]["error"] == "'guess_mode' applies only with 'controlnets'"


def test_a_control_net_for_another_base_model_fails_its_job_only(folder):
    lines = [
        job("other-base", controlnets=[{"name": "sd2_like", "image": "square.png"}]),
        job("after", controlnets=[{"name": "cn_a", "image": "square.png"}]),
    ]
    summary, errors = run_jobs(folder, "mismatch", lines)
    assert summary.written == 1 and summary.failed_jobs == 1
    (error,) = errors
    assert error["id"] == "other-base" and "made for another base model" in error["error"]


def test_the_ray_actor_runs_a_control_task_from_its_json(folder):
    """What `paddiff batch --ray` sends an actor is the task as JSON text: the control units
    travel as paths the actors read (as `image` and `mask` do). The actor class runs here
    without Ray; tests/batch/test_ray.py runs the real cluster."""
    from paddiff.batch_ray import RayTaskRunner

    jobs = [job("a", controlnets=[{"name": "cn_a", "image": "square.png", "scale": 0.8}])]
    plan = batch.plan_units(batch.parse_job(j, 1, folder, None, [CONTROL]) for j in jobs)
    (task,) = batch.make_tasks(plan, 4)
    actor = RayTaskRunner({"out": str(folder / "ray-out")}, threads=1)
    (text,) = actor({"task": [json.dumps({**task, "index": 0})]})["result"]
    result = json.loads(text)
    assert result["error"] is None and result["index"] == 0
    (record,) = result["records"]
    parameters = read_parameters(folder / "ray-out" / record["file"])
    assert (
        "Model: cn_a [" in parameters["ControlNet 0"]
        and "Weight: 0.8" in parameters["ControlNet 0"]
    )


def test_the_net_cache_keeps_the_most_recently_used():
    from paddiff.control.jobs import NetCache

    cache = NetCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # used: "b" is now the oldest
    cache["c"] = 3
    assert list(cache) == ["a", "c"]
