"""LoRA / LyCORIS LoCon adapters and textual-inversion embeddings for a pipeline.

`Pipeline.load_lora_weights`, `set_adapters`, `unload_lora_weights`, `fuse_lora` and
`unfuse_lora` forward to `LoraAdapters` (adapters.py). Files are read by the readers registered
in the `paddiff.lora_formats` entry-point group (files.py); a package adds a format by
registering one. See docs/adapters.md.
"""

from paddiff.lora.adapters import (
    LoadReport,
    LoraAdapters,
    LoraMismatchError,
    LoraPartlyAppliedWarning,
)
from paddiff.lora.files import LoraFile, LoraFormatError, LoraModule, read_lora_file

__all__ = [
    "LoadReport",
    "LoraAdapters",
    "LoraFile",
    "LoraFormatError",
    "LoraMismatchError",
    "LoraModule",
    "LoraPartlyAppliedWarning",
    "read_lora_file",
]
