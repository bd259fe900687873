"""From the full-size folder: an fp16 variant next to it, and an original-layout single file.

    .venv/bin/python benchmarks/make_fullsize_formats.py /work/fullsize-sd15
writes /work/fullsize-sd15/*/...fp16.safetensors and /work/fullsize-sd15-original.safetensors,
with the same test-time helpers that the tests use on the tiny fixtures.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paddiff.weights import save_state_dict  # noqa: E402

from tests.weights_formats import add_fp16_variant, to_original  # noqa: E402

if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/fullsize-sd15")
    add_fp16_variant(folder)
    save_state_dict(to_original(folder), folder.with_name(folder.name + "-original.safetensors"))
