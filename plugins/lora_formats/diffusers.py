"""diffusers / PEFT LoRA files, older diffusers attention-processor LoRAs, and ppdiffusers'.

- PEFT (diffusers >= 0.22 `save_lora_weights`): `unet.<module>.lora_A.weight` [rank, in(, kh,
  kw)] and `.lora_B.weight` [out, rank(, 1, 1)], text encoders under `text_encoder.` and
  `text_encoder_2.`. The scale lora_alpha / r comes from the safetensors metadata diffusers
  writes (`lora_adapter_metadata`), from a `<module>.alpha` tensor, or is 1.
- older diffusers: `unet.<block>.processor.to_q_lora.down.weight` / `.up.weight` (the
  attention processors' LoRA), `<module>.lora.down.weight` (LoRACompatibleLinear / Conv) and
  `text_encoder.<module>.lora_linear_layer.down.weight`; keys without a component prefix are
  the UNet's.
- ppdiffusers saves the same keys, as safetensors or as Paddle pickles (.pdparams, Linear
  weights [in, out]: paddiff.lora transposes those before they get here).
"""

from __future__ import annotations

import json
import re

import numpy as np
from paddiff.interfaces import LoraFormat
from paddiff.lora.files import LoraModule

COMPONENT_PREFIXES = ("text_encoder_2.", "text_encoder.", "unet.")
# (pattern of a down key, replacement giving the module, the up key's suffix in place of down's)
_DOWN = [
    (re.compile(r"^(.*)\.lora_A(?:\.[^.]+)?\.weight$"), "lora_A", "lora_B"),
    (re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.down\.weight$"), None, None),
    (re.compile(r"^(.*)\.lora_linear_layer\.down\.weight$"), "down", "up"),
    (re.compile(r"^(.*)\.lora\.down\.weight$"), "down", "up"),
]


class DiffusersLora(LoraFormat):
    @classmethod
    def matches(cls, keys):
        return any(pattern.match(key) for key in keys for pattern, _, _ in _DOWN)

    @classmethod
    def read(cls, tensors, metadata):
        alphas = _metadata_alphas(metadata)
        modules = []
        for key in tensors:
            for pattern, down_word, up_word in _DOWN:
                found = pattern.match(key)
                if not found:
                    continue
                if down_word is None:  # processor.to_q_lora.down -> <block>.to_q
                    block, projection = found.groups()
                    module = f"{block}.{'to_out.0' if projection == 'to_out' else projection}"
                    up_key = key.removesuffix("down.weight") + "up.weight"
                else:
                    module = found.group(1)
                    tail = key[len(module) :]
                    up_key = module + tail.replace(down_word, up_word, 1)
                if up_key not in tensors:
                    raise ValueError(f"{key} has no matching {up_key}")
                component, module = _split_component(module)
                alpha = tensors.get(f"{found.group(1)}.alpha")
                if alpha is not None:
                    alpha = float(np.asarray(alpha).reshape(-1)[0])
                else:
                    alpha = _alpha_for(alphas, component, module, tensors[key].shape[0])
                modules.append(
                    LoraModule(
                        component, module, tensors[key], tensors[up_key], alpha, (key, up_key)
                    )
                )
                break
        return modules


def _split_component(module: str) -> tuple[str, str]:
    module = module.removeprefix("base_model.model.")
    for prefix in COMPONENT_PREFIXES:
        if module.startswith(prefix):
            return prefix[:-1], module[len(prefix) :]
    return "unet", module


def _metadata_alphas(metadata: dict) -> dict:
    """component -> PEFT LoraConfig fields (lora_alpha, r, alpha_pattern, rank_pattern), from
    the `lora_adapter_metadata` diffusers writes into the safetensors header."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"lora_adapter_metadata is not JSON ({exc})") from None
    configs: dict[str, dict] = {}
    for key, value in flat.items():
        component, _, field = key.partition(".")
        configs.setdefault(component, {})[field] = value
    return configs


def _alpha_for(configs: dict, component: str, module: str, rank: int) -> float | None:
    config = configs.get(component)
    if not config or config.get("lora_alpha") is None:
        return None
    alpha = float(config["lora_alpha"])
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            alpha = float(value)
    if config.get("use_rslora"):
        return alpha * rank / rank**0.5  # rsLoRA scales by alpha / sqrt(r)
    return alpha
