"""The embedded model's control-net training pieces (plugins/embedded/train_control.py)."""

from __future__ import annotations

import numpy as np
from paddiff.plugins.embedded import dataset
from paddiff.plugins.embedded.train_control import (
    HELD_OUT_CENTRES,
    HELD_OUT_MARGIN,
    example,
    place,
    render_at,
)


def test_training_placements_keep_away_from_the_held_out_centres():
    rng = np.random.default_rng(0)
    for _ in range(500):
        cx, cy, r = place(rng)
        assert min(max(abs(cx - x), abs(cy - y)) for x, y in HELD_OUT_CENTRES) > HELD_OUT_MARGIN
        assert r <= cx <= dataset.IMAGE_SIZE - r and r <= cy <= dataset.IMAGE_SIZE - r


def test_the_silhouette_covers_the_drawn_shape():
    attrs = dataset.Attributes("star", "red", "blue", "small")
    picture, silhouette = render_at(attrs, 18.0, 46.0, 12.0)
    red = np.abs(picture.astype(int) - dataset.PALETTE["red"]).sum(axis=2) < 60
    white = silhouette[..., 0] > 127
    assert (
        red.sum() > 50 and (red & white).sum() / (red | white).sum() > 0.8
    )  # anti-aliased rims differ
    ys, xs = np.nonzero(white)
    assert abs(xs.mean() - 18) < 3 and abs(ys.mean() - 46) < 3
    _, held_picture, held_silhouette = example(np.random.default_rng(1), held_out=True)
    assert held_picture.shape == held_silhouette.shape == (64, 64, 3)


def test_a_fresh_control_net_leaves_the_model_unchanged():
    """Copied encoder, zero convolutions at zero: training starts from the embedded model."""
    import paddiff
    from paddiff.plugins.embedded.train_control import control_from_unet

    pipe = paddiff.load_pipeline(execution="dynamic")
    control = control_from_unet(pipe.denoiser)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    context = np.asarray(pipe.text_encoder.encode(["a red star", ""]), np.float32)
    image = rng.uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    downs, mid = control(x, 300.0, context, image)
    assert all(not d.any() for d in downs) and not mid.any()
    plain = pipe.denoiser(x, 300.0, context)
    controlled = pipe.denoiser(
        x, 300.0, context, down_block_additional_residuals=downs, mid_block_additional_residual=mid
    )
    np.testing.assert_array_equal(plain, controlled)


def test_a_training_step_changes_the_control_net(tmp_path):
    """The residuals reach the UNet in training, so the loss trains the net (and a resumed run
    goes on training it)."""
    import subprocess
    import sys

    import paddle

    def train(steps: int) -> None:  # a process each, as a resumed run is
        command = [sys.executable, "-m", "paddiff.plugins.embedded.train_control", "train"]
        done = subprocess.run([*command, *common, "--steps", str(steps)], capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-2000:]

    def weights():
        saved = paddle.load(str(tmp_path / "checkpoint.pdparams"))
        return {k: np.asarray(v) for k, v in saved["net"].items()}

    common = ["--work", str(tmp_path), "--threads", "1", "--batch", "2", "--checkpoint-every", "1"]
    train(1)
    first = weights()
    train(2)
    second = weights()
    zero_convs = [k for k in first if k.startswith("controlnet_down_blocks")]
    assert any(np.abs(first[k]).max() > 0 for k in zero_convs)  # moved off zero
    assert any(not np.array_equal(first[k], second[k]) for k in first)  # the resumed step too


def test_round1_captions_state_the_drawn_attributes():
    """The captions the round-1 model reads say what the picture shows, in both languages."""
    from paddiff.plugins.embedded import lexicon, round1_captions

    rng = np.random.default_rng(5)
    languages = set()
    for _ in range(200):
        attrs = dataset.sample_attributes(rng)
        parsed = lexicon.parse(round1_captions.random_caption(attrs, rng))
        assert (parsed["shape"], parsed["fg"], parsed["bg"]) == attrs.combination
        assert parsed.get("size") in (None, attrs.size)
        languages.add(parsed["language"])
    assert languages == {"zh", "en"}


def test_the_control_net_trains_with_the_captions_its_base_model_read(tmp_path):
    """A model exported by round 2 says it read the grammar; a round-1 model (no "captions"
    entry) read round 1's templates."""
    import json

    from paddiff.plugins.embedded import MODEL_DIR, round1_captions

    index = json.loads((MODEL_DIR / "model_index.json").read_text(encoding="utf-8"))
    expected = index["_paddiff_embedded"].get("captions", "round1")
    assert round1_captions.captions_for_model(MODEL_DIR) == expected
    for written, read in (("grammar", "grammar"), (None, "round1")):
        index["_paddiff_embedded"].pop("captions", None)
        if written:
            index["_paddiff_embedded"]["captions"] = written
        (tmp_path / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
        assert round1_captions.captions_for_model(tmp_path) == read
