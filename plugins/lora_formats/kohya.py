"""kohya-ss / A1111 LoRA files, and LyCORIS LoCon (the same keys on convolutions).

Keys are `lora_unet_<module>` and `lora_te_<module>` (`lora_te1_` / `lora_te2_` for SDXL's two
text encoders), where <module> is the diffusers / transformers module path with "." written as
"_", each with `.lora_down.weight` [rank, in(, kh, kw)], `.lora_up.weight` [out, rank(, 1, 1)]
and an optional scalar `.alpha` (scale alpha / rank; rank when absent).
"""

from __future__ import annotations

import numpy as np
from paddiff.interfaces import LoraFormat
from paddiff.lora.files import LoraModule

PREFIXES = {  # longest first: lora_te1_ must not be read as lora_te_ + "1_..."
    "lora_te1_": "text_encoder",
    "lora_te2_": "text_encoder_2",
    "lora_te_": "text_encoder",
    "lora_unet_": "unet",
}
# LyCORIS algorithms other than LoRA / LoCon, named by a key suffix they use.
UNSUPPORTED = {
    ".hada_w1_a": "LoHa",
    ".lokr_w1": "LoKr",
    ".lora_mid.weight": "LoCon with CP decomposition (lora_mid)",
    ".dora_scale": "DoRA",
    ".diff": "full-weight difference",
}


class KohyaLora(LoraFormat):
    @classmethod
    def matches(cls, keys):
        return any(key.startswith(tuple(PREFIXES)) for key in keys)

    @classmethod
    def read(cls, tensors, metadata):
        modules = []
        for key in tensors:
            for suffix, kind in UNSUPPORTED.items():
                if key.endswith(suffix):
                    raise ValueError(f"{key}: LyCORIS {kind} layers are not supported (yet)")
            if not key.endswith(".lora_down.weight"):
                continue
            base = key.removesuffix(".lora_down.weight")
            prefix = next((p for p in PREFIXES if base.startswith(p)), None)
            if prefix is None:
                continue
            up_key = f"{base}.lora_up.weight"
            if up_key not in tensors:
                raise ValueError(f"{key} has no matching {up_key}")
            alpha = tensors.get(f"{base}.alpha")
            modules.append(
                LoraModule(
                    PREFIXES[prefix],
                    base.removeprefix(prefix),
                    tensors[key],
                    tensors[up_key],
                    None if alpha is None else float(np.asarray(alpha).reshape(-1)[0]),
                    (key, up_key),
                )
            )
        return modules
