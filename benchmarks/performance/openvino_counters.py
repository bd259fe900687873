"""Sum OpenVINO's per-layer performance counters by layer type (docs/performance.md, the bf16
profile of paddiff's graph against the anchor's).

    benchmark_app -m MODEL -d CPU -hint none -nstreams 1 -nthreads 2 -infer_precision bf16 \
        -niter 4 -pc -shape "sample[2,4,32,32],timestep[2],encoder_hidden_states[2,77,768]" > a.txt
    python benchmarks/performance/openvino_counters.py a.txt [b.txt ...]

benchmark_app prints the counters of its last inference; this prints, per file, each layer
type's real time, share of the total and number of layers.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

COUNTER = re.compile(r"layerType:\s*(\S+)\s+execType:\s*\S+\s+realTime \(ms\):\s*([\d.]+)")


def main() -> None:
    for path in sys.argv[1:]:
        times, layers = Counter(), Counter()
        with open(path, encoding="utf-8", errors="replace") as report:
            for line in report:
                found = COUNTER.search(line)
                if found:
                    times[found.group(1)] += float(found.group(2))
                    layers[found.group(1)] += 1
        total = sum(times.values()) or 1.0
        print(f"{path}: {total:.0f} ms")
        for kind, ms in times.most_common(12):
            print(f"  {kind:24s} {ms:9.1f} ms {100 * ms / total:5.1f}%  layers {layers[kind]}")


if __name__ == "__main__":
    main()
