"""Time and memory of one denoiser call with and without a control net (docs/controlnet.md).

    python benchmarks/controlnet_overhead.py [--model DIR --controlnet PATH] [--rounds 5]

Default: the embedded model and its control net. Alternates the sides in each round (a plain
UNet call on a UNet that never saw a control call; the same call on the UNet that did, which in
static mode runs the program that takes residuals, fed zeros; control net + UNet with
residuals; the control net alone) and prints medians, so load changes on a shared machine hit
all sides alike. The UNets run in the mode --execution gives, the control net in the mode
--control-execution gives.
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

    # A second pipeline whose UNet never sees a control call keeps the plain program (in static
    # mode the first control call switches a UNet to the program that takes residuals), so the
    # two programs alternate in the same rounds. (Two UNets in memory: peak RSS counts both.)
    other = paddiff.load_pipeline(args.model, execution=args.execution).denoiser

    def plain_program():
        other(x, t, context)

    sides = {
        "plain UNet, plain program": plain_program,
        "plain UNet, residual program": plain,
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
    base = statistics.median(times["plain UNet, plain program"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:36s} median {median * 1000:8.1f} ms  ({median / base:.2f}x plain)")
    print(
        f"RSS {rss_mb():.0f} MB; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    print(f"control net parameters {net.runner.parameter_count():,}; "
          f"UNet {unet.runner.parameter_count():,}")  # fmt: skip


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


if __name__ == "__main__":
    main()
