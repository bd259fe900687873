"""Start-up with cached programs: the weight files are not read into Layers, and nothing a user
sees changes (images, LoRA, unloading, the dynamic graph)."""

from __future__ import annotations

import os

import numpy as np
import paddiff
import pytest
from paddiff.execution import deferred, set_execution

from support.fixture_configs import FIXTURES, LORA_CASES
from support.pipeline_fixtures import MODELS

LORA = FIXTURES / "lora"


@pytest.fixture
def weight_reads(monkeypatch):
    """How many parameters were read from weight files since the fixture started."""
    count = {"reads": 0}
    read = deferred.PendingSource.read

    def counting(self, key, param):
        count["reads"] += 1
        return read(self, key, param)

    monkeypatch.setattr(deferred.PendingSource, "read", counting)
    return count


def load(cache, execution="static"):
    return paddiff.load_pipeline(MODELS / "sd1", execution=execution, cache_dir=cache)


def image(pipe):
    return np.asarray(pipe.text_to_image("a red cube", steps=2, seed=3, width=64, height=64))


def unet_call(pipe, ref):
    return np.asarray(
        pipe.denoiser(ref["unet_latents"], ref["unet_timesteps"], ref["unet_context"])
    )


def parameters(pipe):
    return [
        p for c in (pipe.denoiser, pipe.vae) for n in c.networks() for p in n.layer.parameters()
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A cache holding the fixture model's programs, exported by a first load that read the
    weights (the old path), and what that load computed."""
    with np.load(LORA / "reference.npz") as data:
        ref = {key: data[key] for key in data.files}
    cache = tmp_path_factory.mktemp("startup-cache")
    first = load(cache)
    results = {
        "image": image(first),
        "unet": unet_call(first, ref),
        "text": np.asarray(first.text_encoder.encode(["a photo of a cat, 4k"])),
    }
    return cache, ref, results


def test_cached_programs_start_without_reading_weights(exported, weight_reads):
    cache, _, expected = exported
    pipe = load(cache)
    got = image(pipe)
    assert weight_reads["reads"] == 0  # not one weight read from the model's files
    assert not any(p._is_initialized() for p in parameters(pipe))  # Layers hold nothing
    assert np.array_equal(got, expected["image"])


def test_a_changed_weight_file_is_read_again(exported, weight_reads):
    cache, _, expected = exported
    unet_file = next((MODELS / "sd1" / "unet").glob("*.safetensors"))
    stat = unet_file.stat()
    try:
        os.utime(unet_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        pipe = load(cache)
        got = image(pipe)
        assert weight_reads["reads"] > 0  # the UNet's file may differ: read it, key it again
        assert np.array_equal(got, expected["image"])
    finally:
        os.utime(unet_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_dynamic_graph_after_a_start_without_weights(exported):
    cache, ref, expected = exported
    pipe = load(cache)
    set_execution([pipe.denoiser], "dynamic")  # the Layer reads the program's parameter file
    dynamic = unet_call(pipe, ref)
    assert np.abs(dynamic - expected["unet"]).max() < 1e-4
    assert np.array_equal(unet_call(load(cache, execution="dynamic"), ref), dynamic)


def test_lora_after_a_start_without_weights(exported, weight_reads):
    cache, ref, expected = exported
    pipe = load(cache)
    pipe.load_lora_weights(LORA / "a_kohya.safetensors", adapter_name="a")
    pipe.load_lora_weights(LORA / "b_peft.safetensors", adapter_name="b")
    pipe.set_adapters(["a", "b"], LORA_CASES["ab"])
    assert np.abs(unet_call(pipe, ref) - ref["unet_ab"]).max() < 1e-4
    text = np.asarray(pipe.text_encoder.encode(["a photo of a cat, 4k"]))
    assert np.abs(text[0] - ref["text_ab"][2]).max() < 1e-4
    pipe.unload_lora_weights()
    assert np.array_equal(unet_call(pipe, ref), expected["unet"])
    assert np.array_equal(
        np.asarray(pipe.text_encoder.encode(["a photo of a cat, 4k"])), expected["text"]
    )
    assert weight_reads["reads"] == 0  # originals came from the programs, not the model files


def test_generate_prints_no_paddle_log_lines(tmp_path):
    """A user's stderr shows paddiff's own lines only, on the run that exports and the next."""
    import subprocess
    import sys
    from pathlib import Path

    from paddiff.execution.quiet import paddle_line

    cli = [str(Path(sys.executable).with_name("paddiff")), "generate", "a red cube"]
    options = ["--model", str(MODELS / "sd1"), "--execution", "static", "--steps", "1"]
    options += ["--width", "64", "--height", "64", "--no-progress", "-o", str(tmp_path / "a.png")]
    env = dict(os.environ, PADDIFF_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PADDIFF_PADDLE_LOGS", None)
    # one run that exports (where Paddle printed "PIR not support input out tensor") and loads
    done = subprocess.run([*cli, *options], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stderr.decode().splitlines()
    assert all(line.startswith("safety: ") for line in lines), lines
    assert paddle_line(
        b"W1207 14:11:35.509047 12994 eager_utils.cc:3584] Paddle static graph(PIR) not "
        b"support input out tensor for now!!!!!\n"
    )
