"""Time alternative forms of one op as exported programs under Paddle Inference + oneDNN.

    python benchmarks/op_variants.py [silu] [group_norm] [attention]

The choices in plugins/nn/layers.py rest on these: SiLU written as `swish`, group normalisation
left as `group_norm`, and Paddle's fused `self_dp_attention` for self-attention. Each variant
is exported with dynamic sizes (as paddiff exports), run 10 times after a warm-up, and its
median printed next to the largest difference from the first variant of its group.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import numpy as np
import paddle
import paddle.nn.functional as F
from paddiff.execution.export import InputSpec, export_layer, program_files
from paddiff.execution.heap import reusing_heap
from paddiff.execution.predictor import default_threads
from paddle import inference


class Silu(paddle.nn.Layer):
    def __init__(self, form: str):
        super().__init__()
        self.form = form

    def forward(self, x):
        if self.form == "silu":
            return F.silu(x)
        if self.form == "swish":
            return F.swish(x)
        return x * F.sigmoid(x)


class GroupNorm(paddle.nn.Layer):
    def __init__(self, form: str, channels: int = 128, groups: int = 32):
        super().__init__()
        self.form, self.groups = form, groups
        self.norm = paddle.nn.GroupNorm(groups, channels, epsilon=1e-6)

    def forward(self, x):
        if self.form == "group_norm":
            return self.norm(x)
        c = self.norm.weight.shape[0]
        grouped = x.reshape([0, self.groups, -1])
        if self.form == "instance_norm":  # each group as one "channel" of an instance norm
            y = F.instance_norm(grouped.unsqueeze(-1), eps=1e-6).reshape([0, c, -1])
        else:  # mean and variance ops
            mean = grouped.mean(axis=-1, keepdim=True)
            var = (grouped * grouped).mean(axis=-1, keepdim=True) - mean * mean
            y = ((grouped - mean) * paddle.rsqrt(var + 1e-6)).reshape([0, c, -1])
        y = y * self.norm.weight.unsqueeze(-1) + self.norm.bias.unsqueeze(-1)
        return paddle.reshape(y, paddle.shape(x))


class SelfAttention(paddle.nn.Layer):
    def __init__(self, form: str, heads: int, head_dim: int):
        super().__init__()
        self.form, self.heads, self.head_dim = form, heads, head_dim

    def forward(self, qkv):  # batch, tokens, 3, heads, head_dim
        scale = self.head_dim**-0.5
        if self.form == "fused" and not paddle.in_dynamic_mode():
            return paddle._C_ops.self_dp_attention(qkv, scale, self.heads)
        q, k, v = (qkv[:, :, i].transpose([0, 2, 1, 3]) for i in range(3))
        scores = paddle.matmul(q, k, transpose_y=True) * scale
        return paddle.matmul(F.softmax(scores, axis=-1), v).transpose([0, 2, 1, 3])


def time_variant(layer, spec: InputSpec, x: np.ndarray, prefix: str) -> tuple[float, np.ndarray]:
    """Export, then run as paddiff's Predictor does (a layer without weights has no .pdiparams,
    which Predictor requires, so the config is made here)."""
    program, params = program_files(export_layer(layer, [spec], prefix))
    config = inference.Config(str(program), str(params)) if params.exists() else None
    config = config or inference.Config(str(program), "")
    config.disable_glog_info()
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(default_threads())
    config.enable_onednn()
    predictor = inference.create_predictor(config)

    def run():
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(x)
        with reusing_heap():
            predictor.run()
        return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

    out = run()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def compare(title: str, variants: dict, spec: InputSpec, x: np.ndarray) -> None:
    print(title, flush=True)
    first = None
    with tempfile.TemporaryDirectory() as folder:
        for number, (name, layer) in enumerate(variants.items()):
            median, out = time_variant(layer, spec, x, f"{folder}/variant{number}")
            first = out if first is None else first
            diff = float(np.abs(out.reshape(first.shape) - first).max())
            print(f"  {name:14s} {median * 1000:8.1f} ms   max diff {diff:.1e}", flush=True)


def main() -> None:
    wanted = sys.argv[1:] or ["silu", "group_norm", "attention"]
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 128, 256, 256), dtype=np.float32)  # a VAE decoder activation
    image_spec = InputSpec("x", (None, 128, None, None))
    if "silu" in wanted:
        forms = {f: Silu(f) for f in ("silu", "swish", "x*sigmoid(x)")}
        compare("SiLU on 1x128x256x256", forms, image_spec, image)
    if "group_norm" in wanted:
        paddle.seed(0)
        forms = {f: GroupNorm(f) for f in ("group_norm", "instance_norm", "mean_var")}
        for layer in forms.values():
            layer.set_state_dict(forms["group_norm"].state_dict())
        compare("GroupNorm(32, 128) on 1x128x256x256", forms, image_spec, image)
    if "attention" in wanted:
        for tokens, heads, head_dim in ((4096, 8, 40), (1024, 8, 40), (4096, 1, 512)):
            qkv = rng.standard_normal((2, tokens, 3, heads, head_dim), dtype=np.float32)
            spec = InputSpec("qkv", (None, None, 3, heads, head_dim))
            forms = {f: SelfAttention(f, heads, head_dim) for f in ("plain", "fused")}
            title = f"self-attention, batch 2, {tokens} tokens, {heads} x {head_dim}"
            compare(title, forms, spec, qkv)


if __name__ == "__main__":
    main()
