"""`paddiff batch` in this process with the embedded model: the output folder's schema,
resuming, changed jobs, damaged files, refused prompts, the three modes."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import paddiff
import pytest
from paddiff import batch
from paddiff.png_info import read_parameters
from PIL import Image

STEPS = 4
METADATA_KEYS = {"id", "labels", "seed", "file", "sha256", "settings", "verdicts"}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """One TaskRunner for the module, so the embedded model loads once; tests point it at
    their own folder."""
    return batch.TaskRunner(tmp_path_factory.mktemp("unused"))


def run(runner, jobs, out, chunk=2):
    runner.out = out
    return batch.run_batch(jobs, out, batch.run_here(runner), chunk=chunk, progress=False)


def write_jobs(path, *jobs) -> None:
    path.write_text(
        "".join(
            (j if isinstance(j, str) else json.dumps(j, ensure_ascii=False)) + "\n" for j in jobs
        ),
        encoding="utf-8",
    )


def metadata(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def errors(out) -> list[dict]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]


def pngs(out) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png"))


CIRCLES = {
    "id": "circles",
    "prompt": "a red circle on a blue background",
    "seed": 3,
    "count": 3,
    "steps": STEPS,
    "labels": {"shape": "circle"},
}
STARS = {
    "id": "stars",
    "prompt": "蓝色背景上的一个黄色星形",
    "seeds": [11, 5],
    "steps": STEPS,
    "scheduler": "euler-a",
    "guidance": 5,
}


def test_output_schema_and_pixels_equal_the_pipeline(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, CIRCLES, "{broken", {"id": "x", "prompt": "p", "size": 64}, STARS)
    summary = run(runner, jobs, out)
    assert (summary.total, summary.written, summary.bad_lines) == (5, 5, 2)
    lines = metadata(out)
    assert [(m["id"], m["seed"]) for m in lines] == [
        ("circles", 3),
        ("circles", 4),
        ("circles", 5),
        ("stars", 11),
        ("stars", 5),
    ]
    assert pngs(out) == sorted(m["file"] for m in lines)
    assert [e["line"] for e in errors(out)] == [2, 3]
    assert "unknown field(s) 'size'" in errors(out)[1]["error"]
    pipe = runner.pipeline(None)
    for line in lines:
        assert set(line) == METADATA_KEYS
        data = (out / line["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == line["sha256"]
        assert line["verdicts"]["image"]["allowed"] is True
        assert line["settings"]["seed"] == line["seed"]
        assert read_parameters(out / line["file"])["Seed"] == str(line["seed"])
    assert lines[0]["labels"] == {"shape": "circle"} and lines[3]["labels"] is None
    # the same image from the pipeline directly, seed alone
    alone = pipe.text_to_image(
        STARS["prompt"], seed=5, steps=STEPS, scheduler="euler-a", guidance_scale=5, progress=False
    )
    assert np.array_equal(
        np.asarray(alone.images[0]), np.asarray(Image.open(out / lines[4]["file"]))
    )
    assert lines[4]["settings"]["sampler"] == alone.settings[0]["sampler"]


def test_a_rerun_skips_what_is_done(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, CIRCLES)
    run(runner, jobs, out)
    before = (out / "metadata.jsonl").read_bytes()
    times = {f: os.stat(out / f).st_mtime_ns for f in pngs(out)}
    summary = run(runner, jobs, out)
    assert (summary.written, summary.already_done) == (0, 3)
    assert (out / "metadata.jsonl").read_bytes() == before
    assert {f: os.stat(out / f).st_mtime_ns for f in pngs(out)} == times


def test_more_images_and_new_labels_keep_the_done_ones(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, CIRCLES)
    run(runner, jobs, out)
    first = {m["file"]: m["sha256"] for m in metadata(out)}
    write_jobs(jobs, {**CIRCLES, "count": 4, "labels": "new"})
    summary = run(runner, jobs, out)
    assert (summary.written, summary.already_done) == (1, 3)
    lines = metadata(out)
    assert [m["seed"] for m in lines] == [3, 4, 5, 6]
    assert all(m["labels"] == "new" for m in lines)  # labels are rewritten, images kept
    assert {m["file"]: m["sha256"] for m in lines[:3]} == first


def test_a_changed_job_is_redone_and_never_mixed(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, CIRCLES, STARS)
    run(runner, jobs, out)
    old = metadata(out)
    write_jobs(jobs, {**CIRCLES, "steps": STEPS + 1}, STARS)
    summary = run(runner, jobs, out)
    assert (summary.written, summary.already_done, summary.stale) == (3, 2, 3)
    new = metadata(out)
    assert len(new) == 5 and all(m["settings"]["steps"] == STEPS + 1 for m in new[:3])
    assert {m["file"] for m in new[:3]}.isdisjoint({m["file"] for m in old[:3]})
    assert pngs(out) == sorted(m["file"] for m in new)  # old images are not in images/
    assert sorted(p.name for p in (out / "stale").rglob("*.png")) == sorted(
        m["file"].rsplit("/", 1)[1] for m in old[:3]
    )


def test_damaged_or_unrecorded_images_are_made_again(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, CIRCLES)
    run(runner, jobs, out)
    good = metadata(out)
    (out / good[0]["file"]).write_bytes(b"damaged")  # hash no longer matches
    (out / good[1]["file"]).unlink()  # gone
    text = (out / "metadata.jsonl").read_text().splitlines()
    # the last line cut short, as a kill in the middle of a write leaves it
    (out / "metadata.jsonl").write_text("\n".join(text[:2]) + "\n" + text[2][:40])
    (out / "images" / "circles" / ".3-x.png.123.tmp").write_bytes(b"partial")
    summary = run(runner, jobs, out)
    assert (summary.written, summary.already_done) == (3, 0)
    assert metadata(out) == good  # same bytes again: same hashes, same lines
    assert not list((out / "images").rglob("*.tmp"))


def test_refused_prompts_and_failing_jobs_go_to_errors(runner, tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("# category: test\nforbiddenword\n")
    config = tmp_path / "safety.json"
    config.write_text(
        json.dumps({"filters": [{"name": "PromptTermFilter", "term_files": [str(terms)]}]})
    )
    checked = batch.TaskRunner(tmp_path, safety_config=str(config))
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(
        jobs,
        {"id": "ok", "prompt": "a red circle", "steps": STEPS},
        {"id": "refused", "prompt": "a forbiddenword circle", "count": 3, "steps": STEPS},
        {"id": "too-big", "prompt": "a red circle", "width": 4096, "height": 4096, "steps": 1},
    )
    checked.out = out
    summary = batch.run_batch(jobs, out, batch.run_here(checked), chunk=2, progress=False)
    assert (summary.written, summary.failed_jobs) == (1, 2)
    lines = errors(out)
    assert [(e["line"], e["id"]) for e in lines] == [(2, "refused"), (3, "too-big")]  # one per job
    assert "refused by the safety filter (category: test)" in lines[0]["error"]
    assert "forbiddenword" not in lines[0]["error"]
    assert "width" in lines[1]["error"] or "pixels" in lines[1]["error"]
    assert [m["id"] for m in metadata(out)] == ["ok"]


def test_image_to_image_and_inpainting_jobs(runner, tmp_path):
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    source.save(tmp_path / "in.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(
        jobs,
        {
            "id": "i2i",
            "mode": "img2img",
            "prompt": "a red circle",
            "image": "in.png",
            "strength": 0.5,
            "seed": 1,
            "steps": STEPS,
        },
        {
            "id": "paint",
            "mode": "inpaint",
            "prompt": "a red circle",
            "image": "in.png",
            "mask": "mask.png",
            "seed": 1,
            "steps": STEPS,
        },
    )
    run(runner, jobs, out)
    lines = metadata(out)
    assert [m["settings"]["mode"] for m in lines] == ["img2img", "inpaint"]
    assert lines[0]["settings"]["strength"] == 0.5
    pipe = runner.pipeline(None)
    alone = pipe.image_to_image(
        "a red circle", tmp_path / "in.png", 0.5, seed=1, steps=STEPS, progress=False
    )
    assert np.array_equal(
        np.asarray(alone.images[0]), np.asarray(Image.open(out / lines[0]["file"]))
    )
    # a changed input image is a changed job
    source.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "in.png")
    summary = run(runner, jobs, out)
    assert (summary.written, summary.stale) == (2, 2)


def test_an_unknown_model_file_is_a_bad_line(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, {"prompt": "x", "model": "nowhere"})
    summary = run(runner, jobs, out)
    assert summary.bad_lines == 1 and "model 'nowhere' not found" in errors(out)[0]["error"]
    assert paddiff.__version__  # the library stays importable after a bad line


def test_two_runs_cannot_write_one_folder(runner, tmp_path):
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out"
    write_jobs(jobs, CIRCLES)
    out.mkdir()
    held = batch._lock(out)  # as a running `paddiff batch` holds it
    try:
        with pytest.raises(OSError, match="another paddiff batch is writing"):
            run(runner, jobs, out)
    finally:
        held.close()
    assert run(runner, jobs, out).written == 3


def test_command_line_errors_exit_1_in_one_line(tmp_path):
    from support.helpers import run_cli

    missing = run_cli("batch", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out"))
    assert missing.returncode == 1 and "job file not found" in missing.stderr
    jobs = tmp_path / "jobs.jsonl"
    write_jobs(jobs, "{broken")
    zero = run_cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--workers", "0")
    assert zero.returncode == 1 and "--workers and --chunk must be at least 1" in zero.stderr
    bad = run_cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--no-progress")
    assert bad.returncode == 1  # a bad line is a failure, though nothing else was asked
    assert "0 images written" in bad.stdout and "1 bad lines" in bad.stdout
    assert errors(tmp_path / "out")[0]["line"] == 1
