"""Run an exported program with Paddle Inference (oneDNN on CPU, GPU where Paddle has one): the
built-in runtime back end (`runtimes.py`), and the precision and thread settings it runs with."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from paddiff.execution.export import program_files
from paddiff.execution.heap import reusing_heap
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


PRECISIONS = ("fp32", "bf16")
PRECISION_ENV = "PADDIFF_PRECISION"


def resolve_precision(precision: str | None = None, check_hardware: bool = True) -> str:
    """The arithmetic asked for: the argument, else $PADDIFF_PRECISION, else "fp32".

    "bf16" runs the exported programs' convolutions, matrix products and most other oneDNN ops
    in bfloat16 (Paddle Inference's `enable_onednn_bfloat16`), keeping inputs and outputs in
    float32. It needs a CPU with AVX512-BF16 or AMX; results differ from fp32 by about 0.5%
    of the values' size (docs/performance.md), which changes images slightly, not their content.
    """
    value = precision or os.environ.get(PRECISION_ENV) or "fp32"
    if value not in PRECISIONS:
        source = "precision=" if precision else f"${PRECISION_ENV}"
        raise ValueError(f"{source} {value!r} is not one of {', '.join(PRECISIONS)}")
    if value == "bf16" and check_hardware:
        from paddle.base import core

        if _gpu_available():
            raise ValueError("precision 'bf16' is implemented for CPUs (oneDNN) only, not GPUs")
        if not core.supports_bfloat16():
            raise ValueError(
                "precision 'bf16' needs a CPU with AVX512-BF16 or AMX instructions, and this "
                "one has neither; use 'fp32'"
            )
    return value


def onednn_shapes() -> int:
    """How many input shapes oneDNN keeps kernels and reordered weights for ($PADDIFF_ONEDNN_SHAPES).

    oneDNN keeps its own copy of every convolution and fully connected weight, reordered into its
    blocked layout, for each input shape it has seen, and that cache is shared by all the
    predictors of a thread, keyed by the shapes of the running predictor's inputs. So one shape
    per component of a pipeline (text encoder, UNet, VAE decoder: 3) keeps each component's
    kernels between calls; fewer makes every switch of component re-reorder its weights, more
    lets new image sizes pile up copies of the UNet's weights (3.3 GB each at SD 1.5 size).
    """
    return max(1, int(os.environ.get("PADDIFF_ONEDNN_SHAPES") or 3))


class Predictor:
    """A loaded program: call it with NumPy arrays in input order, get NumPy arrays back.

    A predictor is not safe to call from two threads at once, so calls are serialised.
    """

    def __init__(
        self,
        prefix: str | Path,
        threads: int | None = None,
        onednn: bool = True,
        precision: str | None = None,
    ):
        precision = resolve_precision(precision)
        program, params = program_files(prefix)
        if not program.exists() or not params.exists():
            raise FileNotFoundError(
                f"no exported program at {prefix} (expected {program} and {params})"
            )
        config = inference.Config(str(program), str(params))
        config.disable_glog_info()
        config.switch_ir_optim(True)
        if _gpu_available():
            _configure_gpu(config)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or default_threads())
            if onednn:
                config.enable_onednn()
                config.set_onednn_cache_capacity(onednn_shapes())
                if precision == "bf16":
                    config.enable_onednn_bfloat16()
            elif precision == "bf16":
                raise ValueError("precision 'bf16' needs oneDNN (onednn=True)")
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
            with reusing_heap():
                self._predictor.run()
            return [self._predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names]


def _configure_gpu(config) -> None:
    """GPU builds of Paddle only; these machines have none, so this path is written from Paddle's
    documentation and has never run here. TensorRT is opt-in (PADDIFF_TENSORRT=1) because it
    builds an engine per input-shape range on first use, which takes minutes."""
    config.enable_use_gpu(256, 0)
    if os.environ.get("PADDIFF_TENSORRT") == "1" and inference.get_trt_compile_version()[0] > 0:
        config.enable_tensorrt_engine(
            workspace_size=1 << 30,
            max_batch_size=1,
            min_subgraph_size=3,
            precision_mode=inference.PrecisionType.Float32,
            use_static=True,  # keep built engines next to the program
            use_calib_mode=False,
        )


def _gpu_available() -> bool:
    import paddle

    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
