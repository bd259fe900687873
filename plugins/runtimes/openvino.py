"""OpenVINO as a runtime back end: runs paddiff's exported Paddle programs on CPU.

`pip install "paddiff[openvino]"` brings it; choose it with `runtime="openvino"` /
`--runtime openvino` / `PADDIFF_RUNTIME=openvino` ("auto" keeps Paddle Inference until a quiet
benchmark shows OpenVINO ahead: docs/performance.md says why).

The program it gets is paddiff's own export, traced in the "portable" variant (no Paddle-only
fused ops; `paddiff.execution.portable`). The first load converts it (paddle2onnx, then
OpenVINO's ONNX front end) and saves the result as OpenVINO IR beside the Paddle program in the export cache
(`program.openvino.xml` / `.bin`), so later processes read the IR and skip the conversion.
Calls compile the model for each input shape they see (OpenVINO is faster on static shapes) and
keep the compiled models of the last few shapes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
from paddiff.plugins.runtimes import mapped_pages

IR_SUFFIX = {"fp32": ".openvino.xml", "bf16": ".openvino-f16.xml"}


def ir_path(prefix, precision: str = "fp32") -> Path:
    """Where the converted model of the program at `prefix` is kept (its weights: .bin).

    bf16 runs read an IR whose weights are stored as float16: OpenVINO keeps the IR's weights
    mapped and resident beside the compiled model's own packed copy, so a float32 IR costs
    twice the packed bfloat16 copy again (SD 1.5 UNet, one process: 5.75 GB peak with the
    float32 IR, 3.55 GB with the float16 one; docs/performance.md). float16 has more mantissa
    bits than bfloat16, but the weights are rounded twice on the way; the tests bound the
    result at 5% of the output's range from float32."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + IR_SUFFIX[precision])


def _compiled_shapes() -> int:
    """Input shapes a loaded program keeps compiled models for (each holds its own weights
    layout, so more shapes cost memory; $PADDIFF_ONEDNN_SHAPES sets both back ends alike)."""
    return max(1, int(os.environ.get("PADDIFF_ONEDNN_SHAPES") or 2))


class OpenVINO:
    """OpenVINO's CPU plugin on paddiff's exported programs."""

    name = "openvino"
    program_variant = "portable"

    @staticmethod
    def unavailable() -> str | None:
        import importlib.util

        for package in ("openvino", "paddle2onnx"):
            if importlib.util.find_spec(package) is None:
                return f"the {package} package is not installed; pip install 'paddiff[openvino]'"
        return None

    def load(self, prefix, threads: int | None = None, precision: str | None = None):
        from paddiff.execution.predictor import default_threads, resolve_precision

        precision = resolve_precision(precision)
        try:
            ir = converted_model(prefix, precision)
        except RuntimeError as exc:  # an op the converters lack: the program still runs
            warnings.warn(
                f"paddiff: {exc}; running {Path(prefix).parent.name} with paddle-inference",
                stacklevel=2,
            )
            from paddiff.execution.runtimes import PaddleInference

            return PaddleInference().load(prefix, threads=threads, precision=precision)
        return OpenVINOProgram(ir, threads or default_threads(), precision)


def converted_model(prefix, precision: str = "fp32") -> Path:
    """The OpenVINO IR of the Paddle program at `prefix` for `precision` ("fp32" or "bf16",
    `ir_path`), converted now if the cache has none.

    The conversion (`openvino_convert`) runs in a child process: paddle2onnx aborts the whole
    process (SIGABRT) on an operator it does not know, and the child's memory (the weights
    held by the ONNX and OpenVINO models on the way) is returned to the system when it ends.
    RuntimeError, with the converter's last output, if it fails."""
    target = ir_path(prefix, precision)
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    _run_converter(prefix, precision)
    if not target.exists():
        raise RuntimeError(f"the OpenVINO conversion of {prefix} wrote no {target.name}")
    return target


def _run_converter(prefix, precision: str = "fp32") -> None:
    command = [sys.executable, "-m", "paddiff.plugins.runtimes.openvino_convert", str(prefix)]
    if precision == "bf16":
        command.append("--float16-weights")
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        reasons = [line for line in output if "rror" in line or "nsupported" in line]
        detail = "; ".join(reasons[-3:]) or (output[-1] if output else "no output")
        raise RuntimeError(
            f"could not convert {prefix} for OpenVINO (converter exit code "
            f"{done.returncode}: {detail[-600:]})"
        )


class OpenVINOProgram:
    """A converted program: call it with NumPy arrays in input order, get NumPy arrays back.

    Calls are serialised (one infer request per compiled shape)."""

    def __init__(self, ir: Path, threads: int, precision: str):
        import openvino as ov

        self._core = ov.Core()
        self._weights = ir.with_suffix(".bin")
        self._model = self._core.read_model(str(ir))
        self.input_names = [port.get_any_name() for port in self._model.inputs]
        self._config = {
            "INFERENCE_NUM_THREADS": int(threads),
            # explicit both ways: OpenVINO picks bf16 by itself on CPUs with AMX
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._compiled: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.input_names):
            raise ValueError(
                f"expected {len(self.input_names)} inputs {self.input_names}, got {len(arrays)}"
            )
        arrays = [np.ascontiguousarray(a) for a in arrays]
        shapes = tuple(a.shape for a in arrays)
        with self._lock:
            request = self._request_for(shapes)
            request.infer(arrays)
            return [
                np.array(request.get_output_tensor(i).data, copy=True)
                for i in range(len(request.model_outputs))
            ]

    def _request_for(self, shapes: tuple):
        request = self._compiled.get(shapes)
        if request is not None:
            self._compiled.move_to_end(shapes)
            return request
        while len(self._compiled) >= _compiled_shapes():
            self._compiled.popitem(last=False)  # the least recently used shape
        model = self._model.clone()
        model.reshape({port: list(shape) for port, shape in zip(model.inputs, shapes, strict=True)})
        # the compiled model packs its own copy of every weight: the IR's pages go back
        with mapped_pages.released_while(self._weights):
            compiled = self._core.compile_model(model, "CPU", self._config)
        request = compiled.create_infer_request()
        self._compiled[shapes] = request
        return request
