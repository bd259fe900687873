"""OpenVINO as a runtime back end: runs paddiff's exported Paddle programs on CPU.

`pip install "paddiff[openvino]"` brings it; choose it with `runtime="openvino"` /
`--runtime openvino` / `PADDIFF_RUNTIME=openvino` (on CPUs it is also what "auto" picks when it is
installed: docs/performance.md says why).

The program it gets is paddiff's own export, traced in the "portable" variant (no Paddle-only
fused ops; `paddiff.execution.portable`). The first load converts it (paddle2onnx, then
OpenVINO's ONNX front end) and saves the result as OpenVINO IR beside the Paddle program in the export cache
(`program.openvino.xml` / `.bin`), so later processes read the IR and skip the conversion.
Calls compile the model for each input shape they see (OpenVINO is faster on static shapes) and
keep the compiled models of the last few shapes.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

IR_SUFFIX = ".openvino.xml"


def ir_path(prefix) -> Path:
    """Where the converted model of the program at `prefix` is kept (its weights: .bin)."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + IR_SUFFIX)


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
            ir = converted_model(prefix)
        except RuntimeError as exc:  # an op the converters lack: the program still runs
            warnings.warn(
                f"paddiff: {exc}; running {Path(prefix).parent.name} with paddle-inference",
                stacklevel=2,
            )
            from paddiff.execution.runtimes import PaddleInference

            return PaddleInference().load(prefix, threads=threads, precision=precision)
        return OpenVINOProgram(ir, threads or default_threads(), precision)


def converted_model(prefix) -> Path:
    """The OpenVINO IR of the Paddle program at `prefix`, converted now if the cache has none.

    Route: paddle2onnx writes the program as ONNX (opset 17) into a temporary folder, and
    OpenVINO's ONNX front end reads that. (OpenVINO 2026.4's own Paddle front end does not
    recognise Paddle 3's PIR programs, `program.json`: "Cannot recognize input model".)
    Written under a temporary name and renamed into place (the .xml last), so a process that
    reads the cache meanwhile sees a whole IR or none."""
    import openvino as ov
    from paddiff.execution.export import program_files

    target = ir_path(prefix)
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    program, params = program_files(prefix)
    if not program.exists():
        raise FileNotFoundError(f"no exported program at {prefix} (expected {program})")
    with tempfile.TemporaryDirectory(prefix="paddiff-onnx-", dir=target.parent) as folder:
        onnx_file = Path(folder) / "program.onnx"
        _paddle_to_onnx(_readable_program(program, Path(folder)), params, onnx_file)
        try:
            model = ov.convert_model(str(onnx_file))
        except Exception as exc:  # the front end's own errors name what it lacks
            raise RuntimeError(
                f"OpenVINO could not read the ONNX form of {program}: {type(exc).__name__}: {exc}"
            ) from exc
        partial = target.with_name(f"program.partial-{os.getpid()}.xml")
        # weights stay float32 in the file: the precision is chosen when compiling
        ov.save_model(model, str(partial), compress_to_fp16=False)
        del model
    partial.with_suffix(".bin").replace(target.with_suffix(".bin"))
    partial.replace(target)
    return target


def _readable_program(program: Path, folder: Path) -> Path:
    """A copy of a PIR program that paddle2onnx 2.1.0 converts right.

    Paddle 3 stores `group_norm`'s epsilon as a float64 attribute; paddle2onnx reads it as a
    float32 and writes whatever those bits give (seen: 9e+32, or a plausible value by luck, so
    the same program converted twice gave two different, wrong, UNets). Stored as float32 (as
    `layer_norm`'s is), it arrives intact.
    """
    if program.suffix != ".json":
        return program
    document = json.loads(program.read_text(encoding="utf-8"))
    retyped = 0

    def visit(node) -> None:
        nonlocal retyped
        if isinstance(node, dict):
            if node.get("#") == "1.group_norm":
                for attribute in node.get("A", []):
                    if attribute.get("N") == "epsilon" and attribute["AT"]["#"] == "0.a_f64":
                        attribute["AT"]["#"] = "0.a_f32"
                        retyped += 1
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)
    if not retyped:
        return program
    copy = folder / program.name
    copy.write_text(json.dumps(document), encoding="utf-8")
    return copy


def _paddle_to_onnx(program: Path, params: Path, onnx_file: Path) -> None:
    """paddle2onnx on one exported program, its console output kept out of the user's way
    (and put into the error if it fails). Its optimiser (polygraphy) is off: it tries to
    pip-install what it misses, and OpenVINO folds constants itself."""
    try:
        import paddle2onnx
    except ImportError as exc:
        raise RuntimeError(
            "the openvino runtime converts programs with paddle2onnx, which is not installed; "
            "pip install 'paddiff[openvino]'"
        ) from exc
    with _captured_output() as output:
        try:
            paddle2onnx.export(
                str(program),
                str(params),
                str(onnx_file),
                opset_version=17,
                enable_onnx_checker=False,  # its checker loads the whole model into protobuf
                enable_optimize=False,
                optimize_tool="None",
                # weights in a file of their own: ONNX's protobuf stops at 2 GB
                external_file=str(onnx_file.with_suffix(".data")),
            )
        except Exception as exc:
            failure = exc
        else:
            failure = None
    if failure is not None or not onnx_file.exists():
        raise RuntimeError(
            f"paddle2onnx could not convert {program}: {failure}\n{output.getvalue()[-2000:]}"
        )


@contextmanager
def _captured_output():
    """Redirect this process's stdout and stderr (file descriptors: paddle2onnx prints from
    C++) into a buffer for the duration of the block."""
    buffer = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield buffer
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", "replace"))


class OpenVINOProgram:
    """A converted program: call it with NumPy arrays in input order, get NumPy arrays back.

    Calls are serialised (one infer request per compiled shape)."""

    def __init__(self, ir: Path, threads: int, precision: str):
        import openvino as ov

        self._core = ov.Core()
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
        compiled = self._core.compile_model(model, "CPU", self._config)
        request = compiled.create_infer_request()
        self._compiled[shapes] = request
        return request
