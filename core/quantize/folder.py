"""Reading the source model folder and writing the quantized one.

A quantized folder is the source folder with its `unet/` replaced: the other components are
hard-linked where the file system allows (copied otherwise), `model_index.json` names the
`OpenVINOInt8UNet` denoiser for `unet`, and `unet/quantization.json` is the tool's report.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from paddiff.quantize import QUANTIZED_UNET_CLASS


def check_source(model: Path) -> dict:
    """The source folder's model_index.json, after the checks that need no model loaded."""
    index_file = model / "model_index.json"
    if not index_file.is_file():
        raise ValueError(
            f"{model} is not a model folder (no model_index.json); `paddiff quantize` needs a "
            "diffusers-layout folder (write one from a single-file checkpoint with "
            "paddiff.loader.save_components(load_components(CHECKPOINT), FOLDER))"
        )
    index = json.loads(index_file.read_text(encoding="utf-8"))
    unet = index.get("unet")
    if not (isinstance(unet, list) and len(unet) == 2 and unet[1]) or not (model / "unet").is_dir():
        raise ValueError(f"{model} has no UNet (no `unet` entry and unet/ folder) to quantize")
    if unet[1] == QUANTIZED_UNET_CLASS or index.get("_paddiff_quantized"):
        raise ValueError(
            f"{model} is already quantized ({QUANTIZED_UNET_CLASS}); quantize the float model "
            "it was made from"
        )
    return index


def check_destination(out_dir: Path, model: Path) -> None:
    if out_dir.resolve() == model.resolve():
        raise ValueError("OUT_DIR must differ from MODEL (the float model is read, not replaced)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; give a new folder")


def write_folder(model: Path, out_dir: Path, index: dict, write_unet) -> None:
    """Write the quantized folder: everything but unet/ from `model`, then `write_unet(folder)`
    fills unet/. Written under a temporary name and renamed, so a failed run leaves no folder
    that looks like a model."""
    partial = out_dir.with_name(out_dir.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for entry in model.iterdir():
            if entry.name in ("unet", "model_index.json"):
                continue
            if entry.is_dir():
                shutil.copytree(entry, partial / entry.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry, partial / entry.name)
        (partial / "unet").mkdir()
        report = write_unet(partial / "unet")
        index = {
            **index,
            "unet": ["paddiff", QUANTIZED_UNET_CLASS],
            "_paddiff_quantized": {"from": str(model.resolve()), "scheme": report["scheme"]},
        }
        (partial / "model_index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False))
        if out_dir.exists():
            out_dir.rmdir()  # checked empty before
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination
