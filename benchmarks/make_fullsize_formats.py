"""From the full-size folder: an fp16 variant, and the original-layout single file twice.

    .venv/bin/python benchmarks/make_fullsize_formats.py /work/fullsize-sd15
writes /work/fullsize-sd15/*/...fp16.safetensors, /work/fullsize-sd15-original.safetensors and
/work/fullsize-sd15-original.ckpt (PyTorch zip, Lightning layout), with the same helpers that the
tests use on the tiny fixtures (about 10 GB in all).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paddiff.weights import load_state_dict, save_state_dict  # noqa: E402

from tests.weights_formats import add_fp16_variant, to_original, write_torch_zip  # noqa: E402

if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/fullsize-sd15")
    add_fp16_variant(folder)
    single = folder.with_name(folder.name + "-original.safetensors")
    save_state_dict(to_original(folder), single)
    write_torch_zip(load_state_dict(single), single.with_suffix(".ckpt"), wrap_lightning=True)
