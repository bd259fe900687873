"""Run an exported program with Paddle Inference (oneDNN on CPU, GPU where Paddle has one)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from paddiff.plugins.inference.export import program_files
from paddle import inference


def default_threads() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    override = os.environ.get("PADDIFF_THREADS")
    if override:
        return max(1, int(override))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Predictor:
    """A loaded program: call it with NumPy arrays in input order, get NumPy arrays back.

    A predictor is not safe to call from two threads at once, so calls are serialised.
    """

    def __init__(self, prefix: str | Path, threads: int | None = None, onednn: bool = True):
        program, params = program_files(prefix)
        if not program.exists() or not params.exists():
            raise FileNotFoundError(
                f"no exported program at {prefix} (expected {program} and {params})"
            )
        config = inference.Config(str(program), str(params))
        config.disable_glog_info()
        config.switch_ir_optim(True)
        if _gpu_available():
            # GPU builds of Paddle only; never exercised on the CPU machines we test on.
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or default_threads())
            if onednn:
                config.enable_onednn()
                # oneDNN caches kernels per input shape; a few shapes (batch 1 and 2) are normal.
                config.set_onednn_cache_capacity(8)
        self._predictor = inference.create_predictor(config)
        self.input_names = self._predictor.get_input_names()
        self.output_names = self._predictor.get_output_names()
        self._lock = threading.Lock()

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.input_names):
            raise ValueError(
                f"expected {len(self.input_names)} inputs {self.input_names}, got {len(arrays)}"
            )
        with self._lock:
            for name, array in zip(self.input_names, arrays, strict=True):
                handle = self._predictor.get_input_handle(name)
                array = np.ascontiguousarray(array)
                handle.reshape(list(array.shape))
                handle.copy_from_cpu(array)
            self._predictor.run()
            return [self._predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names]


def _gpu_available() -> bool:
    import paddle

    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
