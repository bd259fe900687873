"""Data-parallel training under `python -m paddle.distributed.launch` (2 CPU processes, gloo)
gives the loss curve and the LoRA of one process with the same global batch, a new token's
row (pivotal tuning) included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from support.training_data import SD1, kohya_folder

STEPS = 3


def train_args(data: Path, out: Path, batch: int) -> list[str]:
    return [
        "train", "lora", "--model", str(SD1), "--data", str(data), "--output", str(out),
        "--steps", str(STEPS), "--batch-size", str(batch), "--rank", "2",
        "--learning-rate", "1e-2", "--train-text-encoder", "--threads", "1", "--no-progress",
        "--new-token", "圆=a circle", "--token-lr", "5e-2",
        "--loss-log", str(out.with_suffix(".jsonl")),
    ]  # fmt: skip


def losses(out: Path) -> list[float]:
    lines = out.with_suffix(".jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    from paddiff.lora.files import read_lora_file

    data = kohya_folder(tmp_path / "data", count=8)
    script = str(Path(sys.executable).parent / "paddiff")
    single = tmp_path / "single.safetensors"
    subprocess.run([script, *train_args(data, single, batch=4)], check=True, timeout=120)
    parallel = tmp_path / "parallel" / "lora.safetensors"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "paddle.distributed.launch",
            "--nproc_per_node",
            "2",
            "--log_dir",
            str(tmp_path / "launch-logs"),
            script,
            *train_args(data, parallel, batch=2),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    logs = "".join(
        p.read_text() for p in sorted((tmp_path / "launch-logs").glob("*")) if p.is_file()
    )
    assert launched.returncode == 0, launched.stderr[-2000:] + logs[-3000:]
    assert len(losses(single)) == STEPS
    np.testing.assert_allclose(losses(parallel), losses(single), rtol=1e-4)
    # only rank 0 wrote: one LoRA file, one log
    assert sorted(p.name for p in parallel.parent.iterdir()) == ["lora.jsonl", "lora.safetensors"]
    one = {(m.component, m.module): m.delta() for m in read_lora_file(single).modules}
    two = {(m.component, m.module): m.delta() for m in read_lora_file(parallel).modules}
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], atol=1e-5)
    rows = [read_lora_file(path).embeddings["圆"] for path in (single, parallel)]
    np.testing.assert_allclose(rows[1], rows[0], atol=1e-6)
