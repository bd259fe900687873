"""From the full-size folder: an fp16 variant, the original-layout single file twice, and a
ppdiffusers-style copy.

    .venv/bin/python benchmarks/make_fullsize_formats.py /work/fullsize-sd15
writes /work/fullsize-sd15/*/...fp16.safetensors, /work/fullsize-sd15-original.safetensors,
/work/fullsize-sd15-original.ckpt (PyTorch zip, Lightning layout) and /work/fullsize-sd15-pp/
(paddle.save of each network, paddlenlp names for CLIP), with the same helpers that the tests use
on the tiny fixtures (about 14 GB in all).
"""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# tests/ on sys.path, as pytest puts it there (pyproject.toml), for the tests' shared helpers.
sys.path.insert(0, str(ROOT / "tests"))

from paddiff.weights import load_state_dict, save_state_dict  # noqa: E402

from support.weights_formats import (  # noqa: E402
    add_fp16_variant,
    to_original,
    to_paddlenlp_names,
    write_torch_zip,
)

TOKENIZER = ROOT / "tests" / "fixtures" / "sd" / "sd1" / "tokenizer"  # holds no weights


def ppdiffusers_copy(folder: Path, target: Path) -> None:
    import paddle
    from paddiff.loader import load_components

    parts = load_components(folder, tokenizer=TOKENIZER, scheduler=object())
    shutil.copytree(folder / "scheduler", target / "scheduler", dirs_exist_ok=True)
    shutil.copy(folder / "model_index.json", target / "model_index.json")
    for name, sub in [("denoiser", "unet"), ("vae", "vae"), ("text_encoder", "text_encoder")]:
        (target / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / sub / "config.json", target / sub / "config.json")
        state = parts.pop(name).net.state_dict()
        if name == "text_encoder":
            state = to_paddlenlp_names(state)
        paddle.save(state, str(target / sub / "model_state.pdparams"))


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/fullsize-sd15")
    add_fp16_variant(folder)
    single = folder.with_name(folder.name + "-original.safetensors")
    save_state_dict(to_original(folder), single)
    write_torch_zip(load_state_dict(single), single.with_suffix(".ckpt"), wrap_lightning=True)
    ppdiffusers_copy(folder, folder.with_name(folder.name + "-pp"))
