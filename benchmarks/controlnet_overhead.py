"""Time and memory of one denoiser call with and without a control net (docs/controlnet.md).

    python benchmarks/controlnet_overhead.py [--model DIR --controlnet PATH] [--rounds 5]

Default: the embedded model and its control net. Alternates the three sides in each round
(plain UNet; control net + UNet with residuals; the control net alone) and prints medians, so
load changes on a shared machine hit all sides alike. The UNet runs as its loaded execution
mode says (the residual path runs the dynamic graph, see docs/controlnet.md); the control net
in the mode given by --control-execution.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np


def main() -> None:
    import paddiff
    from paddiff.execution import set_execution

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--controlnet", default=None)
    parser.add_argument("--execution", default="dynamic")
    parser.add_argument("--control-execution", default="dynamic")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2, help="2: one image with guidance")
    args = parser.parse_args()
    if args.controlnet is None:
        from paddiff.plugins.embedded.train_control import CONTROL_DIR

        args.controlnet = CONTROL_DIR
    pipe = paddiff.load_pipeline(args.model, execution=args.execution)
    (net,) = pipe.load_controlnet(args.controlnet)
    set_execution(net, args.control_execution)
    unet = pipe.denoiser
    width, height = pipe.native_size()
    f = pipe.vae_factor
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, unet.in_channels, height // f, width // f), np.float32)
    context = np.asarray(pipe.text_encoder.encode(["a red star"] * args.batch), np.float32)
    image = rng.uniform(0, 1, (args.batch, 3, height, width)).astype(np.float32)
    t = np.float32(500)

    def plain():
        unet(x, t, context)

    def control_only():
        net(x, t, context, image)

    def controlled():
        downs, mid = net(x, t, context, image)
        unet(x, t, context, down_block_additional_residuals=downs,
             mid_block_additional_residual=mid)  # fmt: skip

    sides = {
        "plain UNet": plain,
        "control net + UNet": controlled,
        "control net alone": control_only,
    }
    for call in sides.values():  # warm-up (exports programs in static mode)
        call()
    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, call in sides.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain UNet"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:20s} median {median * 1000:8.1f} ms  ({median / base:.2f}x plain)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"control net parameters {net.runner.parameter_count():,}; "
          f"UNet {unet.runner.parameter_count():,}")  # fmt: skip


if __name__ == "__main__":
    main()
