"""Options that trade time or precision for memory: gradient checkpointing, bf16 autocast."""

from __future__ import annotations


def autocast(enabled: bool):
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import paddle

    return paddle.amp.auto_cast(enable=True, dtype="bfloat16", level="O1")


def check_bf16_available() -> None:
    """Paddle 3.3.1's autocast runs on CUDA, XPU and custom devices only: on the CPU it warns
    and computes in float32 (measured: the same losses to the last bit), so asking for it there
    is refused rather than silently ignored."""
    import paddle

    place = paddle.get_device()
    if place.startswith("cpu"):
        raise ValueError(
            "--bf16: Paddle's autocast does not run on the CPU (it would train in float32 "
            "unchanged); use it on a GPU, or leave it out"
        )


def checkpoint_blocks(network) -> None:
    """Recompute each UNet block's activations in the backward pass instead of keeping them
    (Chen et al. 2016): less memory, one more forward per block."""
    from paddle.distributed.fleet.utils import recompute

    blocks = [b for name in ("down_blocks", "up_blocks") for b in getattr(network, name, [])]
    if getattr(network, "mid_block", None) is not None:
        blocks.append(network.mid_block)
    if not blocks:
        raise ValueError("--gradient-checkpointing: this denoiser has no UNet blocks to recompute")
    for block in blocks:
        forward = block.forward
        block.forward = lambda *args, _f=forward: recompute(_f, *args, use_reentrant=False)
