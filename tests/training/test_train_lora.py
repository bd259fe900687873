"""`paddiff train lora` on the tiny SD 1.x fixture: the file it writes loads into the pipeline
and gives exactly the trained network's outputs; resume is bit for bit; bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.training.trainer import LoraTraining, Trainer

from support.training_data import SD1, kohya_folder


def make_trainer(tmp_path, **options):
    from paddiff.loader import load_components

    settings = {
        "data": str(tmp_path / "data"),
        "output": str(tmp_path / "out" / "lora.safetensors"),
        "model": str(SD1),
        "rank": 2,
        "alpha": 1.0,
        "learning_rate": 1e-2,
        "steps": 4,
        "batch_size": 2,
        "progress": False,
        **options,
    }
    if not (tmp_path / "data").exists():
        kohya_folder(tmp_path / "data", count=6)
    return Trainer(LoraTraining(**settings), load_components(SD1, execution="dynamic"))


def unet_and_text_outputs(denoiser, text_encoder):
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    context = text_encoder.encode(["一个红色的圆", "a blue disc"])
    return denoiser(latents, np.array([500.0, 20.0]), context), context


def test_trained_files_load_and_reproduce_the_trained_network(tmp_path):
    """One run, written in both formats: each file, loaded into a fresh pipeline, gives the
    UNet and text-encoder outputs of the network as trained (hooks and all)."""
    import paddiff
    from paddiff.lora.files import read_lora_file
    from paddiff.training.lora_layers import write_lora

    trainer = make_trainer(tmp_path, train_text_encoder=True)
    losses = trainer.run()
    assert len(losses) == 4 and all(np.isfinite(losses))
    trained_unet, trained_text = unet_and_text_outputs(trainer.denoiser, trainer.text_encoder)
    written = {"kohya": tmp_path / "out" / "lora.safetensors"}  # the default format
    written["diffusers"] = tmp_path / "out" / "diffusers.safetensors"
    write_lora(trainer.lora, written["diffusers"], "diffusers", trainer.training_record())
    for file_format, path in written.items():
        lora = read_lora_file(path)
        assert lora.format == file_format
        assert {m.component for m in lora.modules} == {"unet", "text_encoder"}
        pipe = paddiff.load_pipeline(SD1)
        base_unet, _ = unet_and_text_outputs(pipe.denoiser, pipe.text_encoder)
        pipe.load_lora_weights(path)
        unet, text = unet_and_text_outputs(pipe.denoiser, pipe.text_encoder)
        assert np.abs(trained_unet - base_unet).max() > 1e-3  # training changed something
        np.testing.assert_allclose(text, trained_text, atol=2e-5)
        np.testing.assert_allclose(unet, trained_unet, atol=2e-5)


def test_resume_continues_bit_for_bit(tmp_path):
    straight = make_trainer(tmp_path, save_every=2, gradient_accumulation=2)
    straight_losses = straight.run()
    state = tmp_path / "out" / "lora-step000002.state"
    assert state.is_file() and (tmp_path / "out" / "lora-step000002.safetensors").is_file()
    resumed = make_trainer(
        tmp_path,
        gradient_accumulation=2,
        resume_from=str(state),
        output=str(tmp_path / "resumed.safetensors"),
    )
    assert resumed.step == 2
    resumed_losses = resumed.run()
    assert resumed_losses == straight_losses[2:]
    final, again = straight.lora.state(), resumed.lora.state()
    assert all(np.array_equal(final[k], again[k]) for k in final)


def test_resume_file_from_another_configuration_is_refused(tmp_path):
    from paddiff.training.resume import ResumeError

    make_trainer(tmp_path, steps=2, save_every=1).run()
    with pytest.raises(ResumeError, match="another configuration.*rank: saved 2, now 3"):
        make_trainer(tmp_path, rank=3, resume_from=str(tmp_path / "out" / "lora-step000001.state"))


def test_unet_only_training_leaves_the_text_encoder_alone(tmp_path):
    trainer = make_trainer(tmp_path, steps=1)
    assert list(trainer.lora.factors) == ["unet"]
    names = list(trainer.lora.factors["unet"])
    assert names and all(".attentions." in f".{n}" for n in names)
    assert any(n.endswith("attn2.to_k") for n in names)


def test_gradient_checkpointing_and_cosine_schedule_train_the_same(tmp_path):
    plain = make_trainer(tmp_path, steps=2, lr_schedule="cosine", warmup_steps=1).run()
    recomputed = make_trainer(
        tmp_path, steps=2, lr_schedule="cosine", warmup_steps=1, gradient_checkpointing=True
    ).run()
    np.testing.assert_allclose(recomputed, plain, rtol=1e-5)


def test_command_line_trains_and_refuses_bad_input(tmp_path, capsys):
    from paddiff.cli import main

    data = kohya_folder(tmp_path / "data", count=2)
    out = tmp_path / "cli.safetensors"
    args = ["train", "lora", "--model", str(SD1), "--data", str(data), "--output", str(out)]
    assert main([*args, "--steps", "1", "--no-progress", "--threads", "1"]) == 0
    assert out.is_file()
    (tmp_path / "empty").mkdir()
    bad_data = [*args[:5], str(tmp_path / "empty"), "--output", str(out)]
    assert main(bad_data) == 1
    assert "holds no images" in capsys.readouterr().err
    exported = tmp_path / "programs"
    exported.mkdir()
    (exported / "manifest.json").write_text('{"model": "/models/sd15"}')
    assert main(["train", "lora", "--model", str(exported), "--data", str(data),
                 "--output", str(out)]) == 1  # fmt: skip
    assert "exported programs only" in capsys.readouterr().err


def test_bf16_on_the_cpu_is_refused_not_ignored(tmp_path):
    with pytest.raises(ValueError, match="autocast does not run on the CPU"):
        make_trainer(tmp_path, bf16=True)


def test_sample_prompts_are_rendered_every_n_steps(tmp_path):
    trainer = make_trainer(tmp_path, steps=2, sample_every=2, sample_prompts=["一个红色的圆"])
    trainer.settings.sample_steps = 2
    trainer.run()
    assert [p.name for p in (tmp_path / "out" / "lora-samples").iterdir()] == ["step000002-0.png"]
