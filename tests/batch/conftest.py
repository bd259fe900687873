"""Fixtures of the batch kill tests: one job file and its uninterrupted run per module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from paddiff import batch

from support.batch_helpers import JOBS, TOTAL, metadata, pixels


@pytest.fixture(scope="module")
def job_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "jobs.jsonl"
    path.write_text("".join(json.dumps(job) + "\n" for job in JOBS))
    return path


@pytest.fixture(scope="module")
def reference(job_file, tmp_path_factory) -> dict[str, np.ndarray]:
    """file -> pixels of an uninterrupted run in this process."""
    out = tmp_path_factory.mktemp("reference")
    runner = batch.TaskRunner(out)
    summary = batch.run_batch(job_file, out, batch.run_here(runner), chunk=4, progress=False)
    assert summary.written == TOTAL
    return {m["file"]: pixels(out / m["file"]) for m in metadata(out)}
