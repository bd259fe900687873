"""Writing the tiny SD fixtures in other weight formats, at test time, without torch.

What keeps this from being circular: paddiff's pickle reader is tested on files torch itself
wrote (tests/fixtures/weights/tensors_*.bin, sd1.ckpt), and the zip writer's output was also read
back with `torch.load(..., weights_only=True)` when it was written; `to_original` is tested
against single files that diffusers' own `from_single_file` read back identically
(tests/fixtures/weights/sd1.ckpt, sd2_v.safetensors, made by make_formats.py).
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
from paddiff.convert import original_clip, original_unet, original_vae
from paddiff.convert.legacy_names import paddlenlp_clip_keymap
from paddiff.weights import find_component_weights, load_component_weights, save_state_dict

COMPONENT_FOLDERS = ("unet", "vae", "text_encoder")
_STORAGES = {"float32": "FloatStorage", "float16": "HalfStorage", "int64": "LongStorage"}


# -- PyTorch's zip format (what torch.save writes), spelled out opcode by opcode --------------------


def _text(s: str) -> bytes:
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def _ints(values) -> bytes:
    return b"(" + b"".join(_int(int(v)) for v in values) + b"t"  # MARK ... TUPLE


def _strides(shape) -> list[int]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return strides[::-1]


def write_torch_zip(state: dict[str, np.ndarray], path: Path, wrap_lightning=False) -> None:
    """A checkpoint as `torch.save(state_dict)` writes it: data.pkl + one entry per storage."""
    pkl = [b"\x80\x02}("]  # PROTO 2, EMPTY_DICT, MARK
    storages = []
    for i, (key, array) in enumerate(state.items()):
        array = np.ascontiguousarray(array)
        storages.append(array)
        pid = b"(" + _text("storage") + f"ctorch\n{_STORAGES[array.dtype.name]}\n".encode()
        pid += _text(str(i)) + _text("cpu") + _int(array.size) + b"tQ"  # TUPLE, BINPERSID
        args = pid + _int(0) + _ints(array.shape) + _ints(_strides(array.shape))
        args += b"\x89ccollections\nOrderedDict\n)R"  # False, OrderedDict()
        pkl.append(_text(key) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + args + b"tR")
    pkl.append(b"u")  # SETITEMS
    body = b"".join(pkl)
    if wrap_lightning:  # {"state_dict": {...}, "global_step": 1}
        body = (
            b"\x80\x02}(" + _text("state_dict") + body[2:] + _text("global_step") + _int(1) + b"u"
        )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", body + b".")
        archive.writestr("archive/byteorder", "little")
        for i, array in enumerate(storages):
            archive.writestr(f"archive/data/{i}", array.tobytes())
        archive.writestr("archive/version", "3\n")


# -- derived model folders -------------------------------------------------------------------------


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def replace_weights(model: Path, write) -> None:
    """Replace each component's weights file by `write(state, component_folder, stem)`."""
    for sub in COMPONENT_FOLDERS:
        folder = model / sub
        (old,) = find_component_weights(folder)
        state = dict(load_component_weights(folder, dtype=None))
        old.unlink()
        write(state, folder, old.name.split(".")[0])


def as_bin(state, folder, stem):
    stem = {"model": "pytorch_model"}.get(stem, stem)  # transformers' .bin name
    write_torch_zip(state, folder / f"{stem}.bin")


def as_sharded(state, folder, stem):
    keys = list(state)
    half = len(keys) // 2
    weight_map = {}
    for n, part in enumerate([keys[:half], keys[half:]], start=1):
        name = f"{stem}-{n:05d}-of-00002.safetensors"
        save_state_dict({k: state[k] for k in part}, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index))


def add_fp16_variant(model: Path) -> None:
    for sub in COMPONENT_FOLDERS:
        folder = model / sub
        (old,) = find_component_weights(folder)
        state = load_component_weights(folder, dtype="float16")
        save_state_dict(state, folder / old.name.replace(".safetensors", ".fp16.safetensors"))


# -- original single-file layout (the inverse of paddiff.convert) -------------------------


def to_original(model: Path) -> dict[str, np.ndarray]:
    out = {}
    unet = json.loads((model / "unet" / "config.json").read_text())
    attention = [t.startswith("CrossAttn") for t in unet["down_block_types"]]
    keymap = original_unet.unet_keymap(
        len(unet["block_out_channels"]), unet["layers_per_block"], attention
    )
    for key, value in load_component_weights(model / "unet").items():
        out[original_unet.PREFIX + keymap.to_original(key)] = value
    vae = json.loads((model / "vae" / "config.json").read_text())
    keymap = original_vae.vae_keymap(len(vae["block_out_channels"]), vae["layers_per_block"])
    for key, value in load_component_weights(model / "vae").items():
        if original_vae.vae_reshape(key, value.shape + (1, 1)):
            value = value[:, :, None, None]
        out[original_vae.PREFIX + keymap.to_original(key)] = value
    text = load_component_weights(model / "text_encoder")
    text = {k if k.startswith("text_model.") else "text_model." + k: text[k] for k in text}
    config = json.loads((model / "text_encoder" / "config.json").read_text())
    if config["hidden_act"] == "quick_gelu":
        out.update({original_clip.CLIP_PREFIX + k: v for k, v in text.items()})
    else:
        out.update(_openclip(text, config["num_hidden_layers"]))
    return out


def _openclip(text: dict, layers: int) -> dict[str, np.ndarray]:
    keymap = original_clip.openclip_keymap(layers)
    out = {}
    for i in range(layers):
        for kind in ("weight", "bias"):
            parts = [
                text.pop(f"text_model.encoder.layers.{i}.self_attn.{n}_proj.{kind}") for n in "qkv"
            ]
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = np.concatenate(parts)
    out.update({keymap.to_original(k): v for k, v in text.items()})
    last = f"transformer.resblocks.{layers - 1}."
    for key in [k for k in out if k.startswith(last)]:  # the unused last layer SD 2 files have
        out[key.replace(last, f"transformer.resblocks.{layers}.")] = out[key] * 0.5
    hidden = out["token_embedding.weight"].shape[1]
    out["text_projection"] = np.eye(hidden, dtype=np.float32)
    return {original_clip.OPENCLIP_PREFIX + k: v for k, v in out.items()}


def to_paddlenlp_names(state: dict) -> dict:
    """A CLIPTextModel state dict under paddlenlp's module names (as ppdiffusers folders hold)."""
    layers = len({k.split(".")[3] for k in state if k.startswith("text_model.encoder.layers.")})
    keymap = paddlenlp_clip_keymap(layers)
    return {keymap.to_original(k): v for k, v in state.items()}


def with_full_clip_vocabulary(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An original-layout state whose text encoder embeds CLIP's 49,408 tokens, as real SD
    checkpoints do (the tiny fixtures' vocabulary is cut to 1,514), so the shipped tokenizer fits."""
    rng = np.random.default_rng(0)
    for key in [k for k in state if k.endswith("token_embedding.weight")]:
        state[key] = rng.standard_normal((49408, state[key].shape[1])).astype(np.float32)
    return state
