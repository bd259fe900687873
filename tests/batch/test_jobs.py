"""The job file: parsing, validation with line numbers, digests and task planning (no model)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from paddiff import batch
from paddiff.batch import JobError, parse_job, read_jobs


def write_jobs(path, *lines) -> None:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )


def test_defaults_and_seed_numbering():
    job = parse_job({"prompt": "a red circle", "seed": 7, "count": 3}, line=4)
    assert job.id == "line4"
    assert job.mode == "txt2img"
    assert job.seeds == (7, 8, 9)  # as `generate -n 3 --seed 7` numbers them
    assert (job.steps, job.guidance, job.scheduler, job.strength) == (20, 7.5, None, None)
    assert parse_job({"prompt": "x"}, 1).seeds == (0,)
    assert parse_job({"prompt": "x", "seeds": [5, 2]}, 1).seeds == (5, 2)


def test_img2img_and_inpaint_paths_are_relative_to_the_job_file(tmp_path):
    (tmp_path / "in.png").write_bytes(b"not really a png")
    (tmp_path / "mask.png").write_bytes(b"a mask")
    job = parse_job({"mode": "img2img", "prompt": "x", "image": "in.png"}, 1, tmp_path)
    assert job.image == str(tmp_path / "in.png")
    assert job.strength == 0.8
    assert job.input_hashes[0] is not None
    job = parse_job(
        {"mode": "inpaint", "prompt": "x", "image": "in.png", "mask": "mask.png"}, 1, tmp_path
    )
    assert job.strength == 1.0 and job.mask == str(tmp_path / "mask.png")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"prompt": "x", "colour": "red"}, "unknown field(s) 'colour'"),
        ({}, "'prompt' is required"),
        ({"prompt": "  "}, "'prompt' is required"),
        ({"prompt": "x", "mode": "video"}, "'mode' must be one of"),
        ({"prompt": "x", "steps": 0}, "'steps' must be between 1"),
        ({"prompt": "x", "steps": 2.5}, "'steps' must be an integer"),
        ({"prompt": "x", "width": 30}, "multiple of 8"),
        ({"prompt": "x", "guidance": -1}, "'guidance' must be between"),
        ({"prompt": "x", "guidance": True}, "'guidance' must be a number"),
        ({"prompt": "x", "seed": -1}, "'seed' must be between 0"),
        ({"prompt": "x", "seed": 1, "seeds": [1]}, "not both"),
        ({"prompt": "x", "seeds": [1, 1]}, "repeats a seed"),
        ({"prompt": "x", "seeds": [1, 2], "count": 3}, "'count' is 3"),
        ({"prompt": "x", "scheduler": "no-such-sampler"}, "unknown scheduler"),
        ({"prompt": "x", "strength": 0.5}, "only to img2img and inpaint"),
        ({"prompt": "x", "mode": "img2img"}, "needs an 'image'"),
        ({"prompt": "x", "mode": "img2img", "image": "missing.png"}, "file not found"),
        ({"prompt": "x", "model": "no/such/model"}, "not found"),
        ({"prompt": "x", "id": ""}, "'id' must be"),
        (["a list"], "must be a JSON object"),
    ],
)
def test_invalid_jobs_name_the_field(fields, message):
    with pytest.raises(JobError) as error:
        parse_job(fields, 1)
    assert message in str(error.value)


def test_bad_lines_are_reported_with_line_numbers_and_do_not_stop_the_rest(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    write_jobs(
        jobs,
        {"id": "a", "prompt": "a red circle"},
        "{not json",
        "",  # blank lines and comments are skipped but still counted
        "# a comment",
        {"id": "b", "prompt": "x", "steps": "many"},
        {"id": "a", "prompt": "the same id again"},
        {"id": "c", "prompt": "a blue square", "labels": ["square", 3]},
    )
    parsed, errors = read_jobs(jobs)
    assert [job.id for job in parsed] == ["a", "c"]
    assert [job.line for job in parsed] == [1, 7]
    assert [(e["line"], e["id"]) for e in errors] == [(2, None), (5, "b"), (6, "a")]
    assert "not JSON" in errors[0]["error"]
    assert "'steps' must be an integer" in errors[1]["error"]
    assert "already used on line 1" in errors[2]["error"]
    assert parsed[1].labels == ["square", 3]


def test_the_digest_follows_every_setting_and_not_the_labels():
    job = parse_job({"id": "j", "prompt": "a red circle", "labels": {"k": 1}}, 1)
    base = batch.unit_digest(job, 3, "model@1")
    assert batch.unit_digest(job, 3, "model@1") == base
    assert batch.unit_digest(dataclasses.replace(job, labels={"k": 2}), 3, "model@1") == base
    changed = [
        batch.unit_digest(job, 4, "model@1"),
        batch.unit_digest(job, 3, "model@2"),
        batch.unit_digest(dataclasses.replace(job, id="other"), 3, "model@1"),
    ]
    for name, value in [
        ("mode", "img2img"),
        ("prompt", "a red square"),
        ("negative_prompt", "blurry"),
        ("width", 128),
        ("height", 128),
        ("steps", 21),
        ("scheduler", "euler"),
        ("guidance", 7.0),
        ("strength", 0.5),
        ("input_hashes", ("abc", None)),
    ]:
        changed.append(batch.unit_digest(dataclasses.replace(job, **{name: value}), 3, "model@1"))
    assert len(set(changed + [base])) == len(changed) + 1


def test_file_names_hold_a_safe_id_the_seed_and_the_digest():
    assert batch.safe_id("circles_1.a") == "circles_1.a"
    odd = batch.safe_id("../../etc/passwd")
    assert "/" not in odd and not odd.startswith(".")
    assert batch.safe_id("a b") != batch.safe_id("a_b")  # replaced characters add a hash
    job = parse_job({"id": "a b", "prompt": "x", "seed": 5}, 1)
    unit = batch.Unit(job, 5, "f" * 64)
    assert unit.file == f"images/{batch.safe_id('a b')}/5-{'f' * 16}.png"


def test_tasks_are_cut_per_job_and_grouped_by_model(tmp_path):
    (tmp_path / "other").mkdir()
    jobs = [
        parse_job({"id": "a", "prompt": "x", "count": 5}, 1),
        parse_job({"id": "b", "prompt": "y", "model": "other"}, 2, tmp_path),
        parse_job({"id": "c", "prompt": "z", "count": 2}, 3),
    ]
    units = [
        batch.Unit(job, seed, f"{job.id}{seed}".ljust(64, "0"))
        for job in jobs
        for seed in job.seeds
    ]
    tasks = batch.make_tasks(units, chunk=2)
    assert [(t["id"], t["seeds"]) for t in tasks] == [
        ("a", [0, 1]),
        ("a", [2, 3]),
        ("a", [4]),
        ("c", [0, 1]),
        ("b", [0]),
    ]
    json.dumps(tasks)  # tasks travel to other processes as plain JSON


def test_core_shares():
    assert batch.core_shares(2, [0, 1]) == [[0], [1]]
    assert batch.core_shares(2, [0, 1, 2]) == [[0, 1], [2]]
    assert batch.core_shares(3, [4, 5]) == [[4], [5], [4]]
    assert batch.core_shares(1, [0, 1]) == [[0, 1]]
