"""Where one `paddiff generate`-like process spends its time and memory, phase by phase.

    flock /work/bigmem.lock python benchmarks/performance/profile_process.py MODEL_FOLDER \
        [--cache DIR] [--steps 20]

The same work as process.py's paddiff side (256x256, guidance 7.5, DDIM, static programs from
the cache), in-process, with wall and CPU seconds and RSS after each phase: imports,
`load_pipeline`, every program load (`ExportCache.load`), each network's first call and its
later calls, and the PNG. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict
from pathlib import Path


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return float("nan")


class Phases:
    def __init__(self):
        self.rows = []
        self.calls = defaultdict(list)

    def timed(self, name, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn(*args, **kwargs)
        self.rows.append(
            {
                "phase": name,
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
                "rss_gb_after": rss_gb(),
            }
        )
        return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--cache", help="program cache (default: $PADDIFF_CACHE_DIR)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="/tmp/profile_process.png")
    args = parser.parse_args()
    phases = Phases()
    paddiff = phases.timed("import paddiff", __import__, "paddiff")
    phases.timed("import paddiff.execution (Paddle)", __import__, "paddiff.execution")
    from paddiff.execution import network as network_module
    from paddiff.execution.cache import ExportCache

    load = ExportCache.load

    def timed_load(self, prefix):
        return phases.timed(f"program load {Path(prefix).parent.name}", load, self, prefix)

    ExportCache.load = timed_load
    call = network_module.Network.__call__

    def timed_call(self, *arrays):
        wall, cpu = time.perf_counter(), time.process_time()
        value = call(self, *arrays)
        phases.calls[self.name].append(
            (round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3))
        )
        return value

    network_module.Network.__call__ = timed_call
    pipe = phases.timed(
        "load_pipeline",
        paddiff.load_pipeline,
        args.model,
        execution="static",
        cache_dir=args.cache,
        scheduler="ddim",
        safety_filters=[],
    )
    image = phases.timed(
        "text_to_image",
        pipe.text_to_image,
        "a photograph of an astronaut riding a horse",
        steps=args.steps,
        guidance_scale=7.5,
        width=256,
        height=256,
        seed=0,
        progress=False,
    )
    phases.timed("save PNG", image.save, args.out)
    calls = {}
    for name, times in phases.calls.items():
        later = times[1:]
        calls[name] = {
            "calls": len(times),
            "first_wall_s": times[0][0],
            "first_cpu_s": times[0][1],
            "later_median_wall_s": sorted(t[0] for t in later)[len(later) // 2] if later else None,
            "later_median_cpu_s": sorted(t[1] for t in later)[len(later) // 2] if later else None,
        }
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps({"phases": phases.rows, "network_calls": calls, "peak_rss_gb": peak}))


if __name__ == "__main__":
    main()
