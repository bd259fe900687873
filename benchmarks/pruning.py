"""Structured (channel) pruning of the embedded model's UNet, measured (issue 19, item 3).

    python benchmarks/pruning.py --work DIR [--ratios 0.25 0.5] [--model plugins/embedded/model]
        [--no-evaluate]

The brief paddiff started from prunes U-Net channels before quantizing. This script measures
what that would cost and save on the embedded model, without fine-tuning afterwards:

- what is pruned: the channels inside a block that nothing outside the block reads, so the
  block's input and output widths (and every skip connection) stay as they are:
  - ResNet blocks: the channels between conv1 and conv2, in whole GroupNorm groups. GroupNorm
    normalises each group on its own, so dropping whole groups leaves the kept channels'
    values unchanged. Groups are ranked by the L1 norm of the conv2 weights that read them,
    times norm2's mean |gain| on the group (a channel the norm scales down matters less);
  - feed-forward (GEGLU) blocks: the inner channels, ranked by the L1 norm of the `ff.net.2`
    column that reads them;
  - a ratio r prunes the lowest-ranked r of each block's groups or channels (at least one
    ResNet group is always kept).
- how it is scored: the pruned model is written as the float model with the pruned channels'
  outgoing weights set to zero. That computes exactly what the smaller network would (the
  pruned channels are computed and then read by no one), so the embedded model's own evaluator
  (`paddiff.plugins.embedded.quality`, the 408-image phrasing evaluation) scores it unchanged.
  A pruned network of this shape has no diffusers config (its blocks differ in width), which is
  one of the costs the docs weigh.
- what the smaller network would save: multiply-accumulates and parameters, counted with
  forward hooks on one UNet call at the model's native size (batch 1).

Writes DIR/ratio-R/ (model folders: the pruned UNet, the rest linked to MODEL), DIR/ratio-R.json
(the evaluation) and DIR/report.json (savings and scores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WEIGHTS = "diffusion_pytorch_model.safetensors"
EVALUATION = ["--seen", "64", "--held-out-repeats", "1"]  # docs/embedded-model.md's evaluation


def prune_plan(state: dict, ratio: float, groups: int) -> dict[str, np.ndarray]:
    """{layer reading the pruned channels: indices of its input channels to zero}."""
    plan = {}
    for key in state:
        if key.endswith(".conv2.weight") and ".resnets." in key:
            block = key[: -len(".conv2.weight")]
            conv2 = state[key]  # [out, in, k, k]; `in` are the pruned channels
            size = conv2.shape[1] // groups
            reads = np.abs(conv2).sum(axis=(0, 2, 3)).reshape(groups, size).sum(axis=1)
            gain = np.abs(state[f"{block}.norm2.weight"]).reshape(groups, size).mean(axis=1)
            drop = np.argsort(reads * gain)[: min(int(round(ratio * groups)), groups - 1)]
            plan[f"{block}.conv2"] = (drop[:, None] * size + np.arange(size)).reshape(-1)
        elif key.endswith(".ff.net.2.weight"):
            reads = np.abs(state[key]).sum(axis=0)  # [out, inner] -> per inner channel
            plan[key[: -len(".weight")]] = np.argsort(reads)[: int(round(ratio * reads.size))]
    return plan


def apply_plan(state: dict, plan: dict) -> dict:
    pruned = dict(state)
    for layer, channels in plan.items():
        weight = state[f"{layer}.weight"].copy()
        weight[:, channels] = 0.0
        pruned[f"{layer}.weight"] = weight
    return pruned


def count_savings(model: Path, plan: dict) -> dict:
    """Multiply-accumulates and parameters of one UNet call, and the share the smaller network
    would not have."""
    import paddle
    from paddiff.plugins.denoisers.unet import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    config = unet.config
    macs, params, hooks = {}, {}, []

    def record(name):
        def hook(layer, inputs, output):
            if isinstance(layer, paddle.nn.Conv2D):
                kernel = int(np.prod(layer.weight.shape[1:]))  # in / groups x kh x kw
            else:
                kernel = int(layer.weight.shape[0])  # paddle Linear: [in, out]
            macs[name] = int(np.prod(output.shape[1:])) * kernel
            params[name] = sum(int(np.prod(p.shape)) for p in layer.parameters())

        return hook

    for name, layer in unet.net.named_sublayers():
        if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.Linear)):
            hooks.append(layer.register_forward_post_hook(record(name)))
    size = int(config["sample_size"])
    with paddle.no_grad():
        unet.net(
            paddle.zeros([1, config["in_channels"], size, size]),
            paddle.to_tensor([500.0]),
            paddle.zeros([1, 8, config["cross_attention_dim"]]),
        )
    for hook in hooks:
        hook.remove()

    layers = dict(unet.net.named_sublayers())
    saved_macs = saved_params = 0.0
    for layer, channels in plan.items():
        block = layer.rsplit(".", 1)[0]
        if layer.endswith(".conv2"):  # conv1 and time_emb_proj write them, conv2 reads them
            share = len(channels) / layers[layer].weight.shape[1]  # [out, in, kh, kw]
            touched = [f"{block}.conv1", f"{block}.time_emb_proj", layer]
        else:  # ff.net.0.proj writes them (value and gate halves), ff.net.2 reads them
            share = len(channels) / layers[layer].weight.shape[0]  # paddle Linear: [in, out]
            touched = [f"{block}.0.proj", layer]
        for name in touched:
            saved_macs += share * macs.get(name, 0)
            saved_params += share * params.get(name, 0)
    total_params = sum(int(np.prod(p.shape)) for p in unet.net.parameters())
    return {
        "macs_per_call": sum(macs.values()),
        "macs_saved": round(saved_macs / sum(macs.values()), 4),
        "parameters": total_params,
        "parameters_saved": round(saved_params / total_params, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("plugins/embedded/model"))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--no-evaluate", action="store_true", help="count savings only")
    args = parser.parse_args()

    from paddiff.weights import load_state_dict, save_state_dict

    model = args.model.resolve()
    state = {k: np.asarray(v) for k, v in load_state_dict(model / "unet" / WEIGHTS).items()}
    groups = json.loads((model / "unet" / "config.json").read_text())["norm_num_groups"]
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"model": str(model), "evaluation": EVALUATION, "ratios": {}}
    for ratio in args.ratios:
        name = f"ratio-{ratio:g}"
        plan = prune_plan(state, ratio, groups)
        folder = args.work / name
        (folder / "unet").mkdir(parents=True, exist_ok=True)
        for entry in model.iterdir():
            if entry.name != "unet" and not (folder / entry.name).exists():
                os.symlink(entry, folder / entry.name)
        (folder / "unet" / "config.json").write_text((model / "unet" / "config.json").read_text())
        save_state_dict(apply_plan(state, plan), folder / "unet" / WEIGHTS)
        result = count_savings(folder, plan)
        if not args.no_evaluate:
            scores = args.work / f"{name}.json"
            command = [sys.executable, "-m", "paddiff.plugins.embedded.quality", "--model",
                       str(folder), *EVALUATION, "--out", str(scores)]  # fmt: skip
            subprocess.run(command, check=True, env={**os.environ, "PADDIFF_THREADS": "1"})
            records = json.loads(scores.read_text())["records"]
            result["all_right"] = round(float(np.mean([r["all_ok"] for r in records])), 4)
            result["images"] = len(records)
        report["ratios"][name] = result
        print(name, json.dumps(result), flush=True)
    (args.work / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
