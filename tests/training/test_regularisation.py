"""`--reg-data` / `--prior-loss-weight` (kohya's reg_data_dir / prior_loss_weight): the
regularisation images join the batches and their share of the loss is scaled by the weight."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.training.resume import ResumeError

from support.training_data import kohya_folder
from training.test_train_lora import make_trainer


def with_regularisation(tmp_path, weight, **options):
    if not (tmp_path / "reg").exists():
        kohya_folder(tmp_path / "reg", count=4)
    # four images of each, batch 8: every batch holds all of both folders
    return make_trainer(
        tmp_path, reg_data=str(tmp_path / "reg"), prior_loss_weight=weight, batch_size=8, **options
    )


def test_the_weight_scales_only_the_regularisation_images_share_of_the_loss(tmp_path):
    kohya_folder(tmp_path / "data", count=4)
    losses = {w: float(with_regularisation(tmp_path, w)._micro_loss(0)) for w in (0.0, 1.0, 3.0)}
    trainer = with_regularisation(tmp_path, 1.0)
    assert len(trainer.examples) == 8
    assert [e.path.parent.name for e in trainer.examples] == ["data"] * 4 + ["reg"] * 4
    training_only, regularisation = losses[0.0], losses[1.0] - losses[0.0]
    assert training_only > 0 and regularisation > 0
    np.testing.assert_allclose(losses[3.0], training_only + 3 * regularisation, rtol=1e-5)


def test_weight_one_is_plain_training_on_both_folders(tmp_path):
    """--reg-data with weight 1 trains exactly as one folder holding both sets of images."""
    kohya_folder(tmp_path / "data", count=4)
    regularised = with_regularisation(tmp_path, 1.0, steps=2).run()
    kohya_folder(tmp_path / "both" / "data", count=4)
    kohya_folder(tmp_path / "both" / "reg", count=4)
    merged = make_trainer(tmp_path, data=str(tmp_path / "both"), batch_size=8, steps=2).run()
    np.testing.assert_allclose(regularised, merged, rtol=1e-5)


def test_a_resume_file_from_another_prior_loss_weight_is_refused(tmp_path):
    kohya_folder(tmp_path / "data", count=4)
    with_regularisation(tmp_path, 1.0, steps=2, save_every=1).run()
    state = str(tmp_path / "out" / "lora-step000001.state")
    with pytest.raises(ResumeError, match="prior_loss_weight: saved 1.0, now 0.5"):
        with_regularisation(tmp_path, 0.5, resume_from=state)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prior_loss_weight": 0.5}, "applies to --reg-data images; give --reg-data"),
        ({"reg_data": "SELF"}, "is the --data folder itself"),
        ({"reg_data": "REG", "prior_loss_weight": -1.0}, "must be 0 or more"),
        ({"reg_data": "MISSING"}, "training data folder not found"),
    ],
)
def test_bad_regularisation_settings_are_refused(tmp_path, options, message):
    kohya_folder(tmp_path / "reg", count=2)
    folders = {"SELF": tmp_path / "data", "REG": tmp_path / "reg", "MISSING": tmp_path / "nope"}
    if "reg_data" in options:
        options["reg_data"] = str(folders[options["reg_data"]])
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, **options)
