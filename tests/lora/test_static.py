"""LoRA with exported programs: a change reaches the program without exporting it again."""

from __future__ import annotations

import numpy as np
from paddiff.execution import ExportCache, set_execution

from support.fixture_configs import FIXTURES, LORA_CASES
from support.pipeline_fixtures import fixture_pipeline

LORA = FIXTURES / "lora"


def programs(root) -> list:
    """Exported programs (not the changed parameter files a LoRA keeps next to them)."""
    found = (p.parent.relative_to(root) for p in root.rglob("program.json"))
    return sorted(p for p in found if not p.parts[0].startswith("paddiff-live-"))


def live_files(root) -> list:
    return sorted(root.glob("paddiff-live-*/program.pdiparams"))


def test_lora_switch_refeeds_the_exported_program(tmp_path):
    with np.load(LORA / "reference.npz") as data:
        ref = {key: data[key] for key in data.files}
    pipe = fixture_pipeline("sd1")
    cache = ExportCache(tmp_path / "cache")
    set_execution([pipe.denoiser, pipe.text_encoder], "static", cache=cache)

    def run():
        unet = pipe.denoiser(ref["unet_latents"], ref["unet_timesteps"], ref["unet_context"])
        return np.asarray(unet), np.asarray(pipe.text_encoder.encode(["a photo of a cat, 4k"]))

    base = run()
    exported = programs(tmp_path / "cache")
    assert len(exported) == 2  # the UNet and the text encoder, each once
    pipe.load_lora_weights(LORA / "a_kohya.safetensors", adapter_name="a")
    pipe.load_lora_weights(LORA / "b_peft.safetensors", adapter_name="b")
    pipe.set_adapters(["a", "b"], LORA_CASES["ab"])
    unet, text = run()
    assert np.abs(unet - ref["unet_ab"]).max() < 1e-4
    assert np.abs(text[0] - ref["text_ab"][2]).max() < 1e-4
    assert programs(tmp_path / "cache") == exported  # nothing exported again
    # one changed parameter file per changed network, no weights in the Layers
    assert len(live_files(tmp_path / "cache")) == 2
    assert not any(p._is_initialized() for p in pipe.denoiser.net.parameters())
    pipe.unload_lora_weights()
    after = run()
    assert np.array_equal(after[0], base[0]) and np.array_equal(after[1], base[1])
    assert not live_files(tmp_path / "cache")  # the programs' own files hold the weights again
    # back in the dynamic graph, the Layer holds the merged weights, not the program's
    pipe.load_lora_weights(LORA / "a_peft.safetensors", adapter_name="again")
    set_execution([pipe.denoiser], "dynamic")
    unet = np.asarray(
        pipe.denoiser(ref["unet_latents"], ref["unet_timesteps"], ref["unet_context"])
    )
    assert np.abs(unet - ref["unet_a"]).max() < 1e-4
