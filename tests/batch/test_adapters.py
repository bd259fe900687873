"""Batch jobs with LoRAs (embedded model) and textual-inversion embeddings (the tiny SD 1.x
fixture: the embedded model's BERT text encoder takes no new tokens): names resolve in the LoRA
folder, each job gets exactly its adapters, and nothing of one job's adapters reaches the next
job's images in the same process."""

from __future__ import annotations

import json

import numpy as np
import paddiff
import pytest
from paddiff import batch
from paddiff.batch import JobError, parse_job
from PIL import Image

from support.fixture_configs import FIXTURES
from support.lora_files import write_peft_lora

STEPS = 4
PROMPT = "a red circle on a blue background"
SD1 = FIXTURES / "sd" / "sd1"
EMBEDDING = FIXTURES / "lora" / "ti_a1111.safetensors"  # its token: ti_a1111


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A LoRA folder with two LoRAs, and a LoRA beside the job file."""
    root = tmp_path_factory.mktemp("adapters")
    write_peft_lora(root / "loras" / "warm.safetensors", 1)
    write_peft_lora(root / "loras" / "cold.safetensors", 2)
    write_peft_lora(root / "jobs" / "local.safetensors", 3)
    return root


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def job(job_id, **fields) -> dict:
    return {"id": job_id, "prompt": PROMPT, "seed": 5, "steps": STEPS, **fields}


def test_each_job_gets_exactly_its_adapters_and_nothing_leaks(folders):
    jobs_path, out = folders / "jobs" / "jobs.jsonl", folders / "out"
    jobs = [
        job("plain"),
        job("warm", loras=[{"name": "warm"}]),
        job("warm-cold", loras=[{"name": "warm", "scale": 0.5}, {"name": "cold"}]),
        job("plain-again"),
        job("local", loras=[{"path": "local.safetensors", "scale": 0.8}]),
        job("embedding", prompt="a cat ti_a1111", model=str(SD1), embeddings=[str(EMBEDDING)]),
        job("no-embedding", prompt="a cat ti_a1111", model=str(SD1)),
    ]
    jobs_path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    runner = batch.TaskRunner(out)  # one process, one pipeline for every job
    summary = batch.run_batch(
        jobs_path, out, batch.run_here(runner), progress=False, lora_dir=folders / "loras"
    )
    assert summary.written == len(jobs) and not summary.failed_jobs
    lines = {m["id"]: m for m in map(json.loads, (out / "metadata.jsonl").read_text().splitlines())}
    got = {name: pixels(out / line["file"]) for name, line in lines.items()}

    def fresh(prompt=PROMPT, loras=(), embeddings=(), model=None):
        """The same image from a new pipeline with only these adapters."""
        from paddiff.safety import load_filters

        pipe = paddiff.load_pipeline(model, safety_filters=load_filters(None, model_dir=model))
        for path, scale in loras:
            pipe.load_lora_weights(path, scale=scale)
        for path in embeddings:
            pipe.load_textual_inversion(path)
        result = pipe.text_to_image(prompt, steps=STEPS, seed=5, progress=False)
        return np.asarray(result.images[0])

    loras = folders / "loras"
    plain = fresh()
    assert np.array_equal(got["plain"], plain)
    # after two jobs with LoRAs, a job without any is the plain model's image again
    assert np.array_equal(got["plain-again"], plain)
    assert np.array_equal(got["warm"], fresh(loras=[(loras / "warm.safetensors", 1.0)]))
    assert not np.array_equal(got["warm"], plain)  # the LoRA did something
    both = [(loras / "warm.safetensors", 0.5), (loras / "cold.safetensors", 1.0)]
    assert np.array_equal(got["warm-cold"], fresh(loras=both))
    local = [(folders / "jobs" / "local.safetensors", 0.8)]
    assert np.array_equal(got["local"], fresh(loras=local))
    with_token = fresh("a cat ti_a1111", embeddings=[EMBEDDING], model=SD1)
    assert np.array_equal(got["embedding"], with_token)
    # the embedding's token is gone again for the next job: the word is a plain word there
    assert np.array_equal(got["no-embedding"], fresh("a cat ti_a1111", model=SD1))
    assert not np.array_equal(got["embedding"], got["no-embedding"])
    # the metadata records the adapters; a job without them has none
    assert "Lora hashes" in read_png_parameters(out / lines["warm-cold"]["file"])
    assert "Lora hashes" not in read_png_parameters(out / lines["plain"]["file"])


def read_png_parameters(path) -> str:
    with Image.open(path) as image:
        return image.text["parameters"]


def test_adapter_fields_are_checked_with_clear_errors(folders, monkeypatch):
    base, dirs = folders / "jobs", [folders / "loras"]
    monkeypatch.delenv("PADDIFF_LORA_DIR", raising=False)
    parsed = parse_job(job("a", loras=[{"name": "cold", "scale": 0.3}]), 1, base, dirs)
    assert parsed.loras[0][:2] == (str(folders / "loras" / "cold.safetensors"), 0.3)
    cases = {
        "no LoRA named 'hot'; available: cold, warm": [{"name": "hot"}],
        "give a name from the folder, not a path": [{"name": "../loras/warm"}],
        'needs "name" or "path"': [{"name": "warm", "path": "local.safetensors"}],
        "LoRA file not found: gone.safetensors": [{"path": "gone.safetensors"}],
        "the scale of warm.safetensors must be a number": [{"name": "warm", "scale": "1"}],
        "'loras' entries are objects": ["warm"],
        "'loras' names one file twice": [{"name": "warm"}, {"name": "warm", "scale": 2}],
    }
    for message, loras in cases.items():
        with pytest.raises(JobError, match=message.replace("(", r"\(")):
            parse_job(job("a", loras=loras), 1, base, dirs)
    with pytest.raises(JobError, match="no LoRA folder is configured"):
        parse_job(job("a", loras=[{"name": "warm"}]), 1, base)
    with pytest.raises(JobError, match="embedding file not found: nope.pt"):
        parse_job(job("a", embeddings=["nope.pt"]), 1, base, dirs)


def test_adapters_are_part_of_the_digest_and_plain_jobs_keep_theirs(folders):
    base, dirs = folders / "jobs", [folders / "loras"]
    plain = parse_job(job("a"), 1, base, dirs)
    assert "loras" not in plain.settings() and "embeddings" not in plain.settings()
    digests = {
        batch.unit_digest(parse_job(job("a", **fields), 1, base, dirs), 5, "m")
        for fields in (
            {},
            {"loras": [{"name": "warm"}]},
            {"loras": [{"name": "warm", "scale": 0.5}]},
            {"loras": [{"name": "cold"}]},
            {"embeddings": [str(EMBEDDING)]},
        )
    }
    assert len(digests) == 5  # a changed scale or file is a changed job: its images are redone


def test_the_command_looks_names_up_in_lora_dir(folders, tmp_path):
    import subprocess

    from support.batch_helpers import PADDIFF

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(job("a", loras=[{"name": "hot"}])) + "\n")
    run = subprocess.run(
        [PADDIFF, "batch", str(jobs), "--out", str(tmp_path / "out"), "--no-progress"]
        + ["--lora-dir", str(folders / "loras")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "1 bad lines" in run.stdout
    error = json.loads((tmp_path / "out" / "errors.jsonl").read_text())
    assert error["line"] == 1 and "no LoRA named 'hot'; available: cold, warm" in error["error"]
