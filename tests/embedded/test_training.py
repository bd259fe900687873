"""The embedded model's training code, run for a few steps: its stages chain, a stopped run
resumes to exactly the weights of one that never stopped, the objective cannot change on resume,
and the export is a model folder the ordinary pipeline loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import paddle
import pytest
from paddiff.plugins.embedded import MODEL_DIR, train

TINY = ["--threads", "1", "--batch", "2", "--images", "8", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def vae_work(tmp_path_factory):
    """A work folder after two steps of stage 1 (the VAE)."""
    work = tmp_path_factory.mktemp("train")
    train.main(["vae", "--work", str(work), "--steps", "2", *TINY])
    return work


def copy_of(work, tmp_path):
    target = tmp_path / "work"
    shutil.copytree(work, target)
    return target


def unet_weights(work, step):
    return paddle.load(str(work / "unet" / f"step-{step:06d}" / "unet.pdparams"))


def test_stopping_and_resuming_gives_the_uninterrupted_weights(vae_work, tmp_path):
    straight = copy_of(vae_work, tmp_path / "a")
    train.main(["unet", "--work", str(straight), "--steps", "3", *TINY])
    resumed = copy_of(vae_work, tmp_path / "b")
    train.main(["unet", "--work", str(resumed), "--steps", "1", *TINY])
    train.main(["unet", "--work", str(resumed), "--steps", "3", *TINY])  # picks up at step 1
    a, b = unet_weights(straight, 3), unet_weights(resumed, 3)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
    first = unet_weights(straight, 1)
    assert any(not np.array_equal(first[k].numpy(), a[k].numpy()) for k in a)  # it learns


def test_a_resumed_run_refuses_another_objective(vae_work, tmp_path):
    work = copy_of(vae_work, tmp_path)
    train.main(["unet", "--work", str(work), "--steps", "1", "--min-snr-gamma", "5", *TINY])
    pinned = json.loads((work / "unet" / "objective.json").read_text())
    assert pinned["prediction_type"] == "v_prediction" and pinned["min_snr_gamma"] == 5.0
    assert pinned["unet_config"] == train.UNET_CONFIG
    with pytest.raises(SystemExit, match="mix two objectives"):
        train.main(["unet", "--work", str(work), "--steps", "2", "--prediction-type", "epsilon"])


def test_min_snr_weights_cap_only_the_nearly_clean_examples():
    alpha_bar = train.training_alphas_cumprod()
    weights = train.loss_weights(alpha_bar, {"prediction_type": "v_prediction", "min_snr_gamma": 5})
    snr = alpha_bar / (1 - alpha_bar)
    assert np.allclose(weights[snr <= 5], snr[snr <= 5] / (snr[snr <= 5] + 1))
    assert (weights[snr > 5] < 5 / 6 + 1e-6).all() and weights[0] < 0.01
    plain = train.loss_weights(
        alpha_bar, {"prediction_type": "v_prediction", "min_snr_gamma": None}
    )
    assert (plain == 1).all()


def test_the_export_is_a_model_folder_the_pipeline_loads(vae_work, tmp_path):
    import paddiff

    work = copy_of(vae_work, tmp_path)
    train.main(["unet", "--work", str(work), "--steps", "1", *TINY])
    model = tmp_path / "model"
    train.main(["export", "--work", str(work), "--model", str(model), *TINY])
    scheduler = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    pipe = paddiff.load_pipeline(str(model))
    result = pipe.text_to_image("蓝色背景上的红色圆形", steps=2, seed=1, progress=False)
    assert result.images[0].size == (64, 64)


@pytest.mark.skipif(not (MODEL_DIR / "model_index.json").is_file(), reason="no exported model")
def test_a_run_continued_from_an_exported_model_starts_from_its_weights(tmp_path):
    """--init-from: the model's VAE is the work folder's VAE, its UNet and text encoder the
    starting weights; words the model knew keep their embedding rows, new words start fresh.
    The first step's learning rate is 0 (warm-up), so the step-1 weights are the start."""
    import paddiff

    work = tmp_path / "work"
    train.main(["unet", "--work", str(work), "--steps", "1", "--init-from", str(MODEL_DIR), *TINY])
    shipped = paddiff.load_pipeline(str(MODEL_DIR))
    checkpoint = work / "unet" / "step-000001"
    unet = paddle.load(str(checkpoint / "unet.pdparams"))
    for key, value in shipped.denoiser.net.state_dict().items():
        np.testing.assert_array_equal(unet[key].numpy(), value.numpy(), err_msg=key)
    bert = paddle.load(str(checkpoint / "text_encoder.pdparams"))
    key = "embeddings.word_embeddings.weight"
    rows, old = bert[key].numpy(), shipped.text_encoder.net.state_dict()[key].numpy()
    fresh = train.make_text_encoder(work / "tokenizer")
    train.init_text_encoder(fresh.net, train.SEED + 4)
    fresh_rows = fresh.net.state_dict()[key].numpy()
    old_index = {t: i for i, t in enumerate(shipped.text_encoder.tokenizer.tokens)}
    for row, token in enumerate(fresh.tokenizer.tokens):
        expected = old[old_index[token]] if token in old_index else fresh_rows[row]
        np.testing.assert_array_equal(rows[row], expected, err_msg=token)
    vae = paddle.load(str(work / "vae" / "step-000000" / "vae.pdparams"))
    for key, value in shipped.vae.net.state_dict().items():
        np.testing.assert_array_equal(vae[key].numpy(), value.numpy(), err_msg=key)
