"""LoRA factors trained on the pipeline's own layers, and the files they are written to.

A factor pair (down, up) is attached to a Linear or Conv2D layer with a forward post-hook:

    y = layer(x) + (alpha / rank) * up(down(x))

(Hu et al. 2021). The model's layers stay as they are (same names, frozen weights), so the
network being trained is exactly the one the pipeline runs, and removing the hooks gives it
back untouched. `down` is a layer of the same kind as the target (a Linear, or a Conv2D with
the target's kernel, stride and padding: LyCORIS' LoCon), `up` a Linear or 1x1 Conv2D;
`up` starts at zero so training starts from the model itself.

Which layers: "attention" (kohya's default) is every Linear and 1x1 Conv2D inside the UNet's
transformer blocks (`attentions.*`: q, k, v, out, feed-forward, proj_in/out) and every Linear of
the text encoder's layers; "all" adds every other Linear and Conv2D of the UNet (LoCon).
"""

from __future__ import annotations

import json
import math

import numpy as np

KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
TARGET_SETS = ("attention", "all")


def target_layers(component: str, layer, targets: str) -> dict:
    """name -> sublayer of `layer` that gets a LoRA."""
    from paddle import nn

    found = {}
    for name, sub in layer.named_sublayers():
        is_linear = isinstance(sub, nn.Linear)
        is_conv = isinstance(sub, nn.Conv2D) and sub._groups == 1
        if not (is_linear or is_conv):
            continue
        if component == "text_encoder":
            wanted = is_linear and name != "text_projection"
        elif targets == "all":
            wanted = True
        else:
            pointwise = is_conv and tuple(sub._kernel_size) == (1, 1)
            wanted = ".attentions." in f".{name}" and (is_linear or pointwise)
        if wanted:
            found[name] = sub
    return found


class LoraSet:
    """The factors of one training run: {component: {layer name: (down, up)}}, hooked in."""

    def __init__(self, layers: dict, rank: int, alpha: float, seed: int):
        import paddle
        from paddle import nn

        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        self.factors: dict[str, dict[str, tuple]] = {}
        self._hooks = []
        rng = np.random.default_rng([seed, 11])  # 11: the initialisation's stream
        for component, named in layers.items():
            self.factors[component] = {}
            for name, target in sorted(named.items()):
                if isinstance(target, nn.Linear):
                    fan_in, fan_out = target.weight.shape
                    down = nn.Linear(fan_in, rank, bias_attr=False)
                    up = nn.Linear(rank, fan_out, bias_attr=False)
                else:
                    fan_out, fan_in = target.weight.shape[:2]
                    down = nn.Conv2D(
                        fan_in,
                        rank,
                        target._kernel_size,
                        target._stride,
                        target._padding,
                        dilation=target._dilation,
                        bias_attr=False,
                    )
                    up = nn.Conv2D(rank, fan_out, 1, bias_attr=False)
                # kohya / PEFT: down ~ Kaiming-uniform (a = sqrt 5), i.e. U(-b, b) with
                # b = 1 / sqrt(fan in); up = 0, so the first step starts at the model itself.
                bound = 1.0 / math.sqrt(int(np.prod(down.weight.shape)) // rank)
                down.weight.set_value(rng.uniform(-bound, bound, down.weight.shape).astype("f4"))
                up.weight.set_value(np.zeros(up.weight.shape, "float32"))
                self.factors[component][name] = (down, up)
                self._hooks.append(target.register_forward_post_hook(self._hook(down, up)))
        self.parameters = [p for f in self._pairs() for layer in f for p in layer.parameters()]
        for param in self.parameters:
            param.stop_gradient = False
        self._paddle = paddle

    def _hook(self, down, up):
        scale = self.scale

        def add_update(layer, inputs, output):
            return output + scale * up(down(inputs[0]))

        return add_update

    def _pairs(self):
        return [pair for named in self.factors.values() for pair in named.values()]

    def remove(self) -> None:
        """Detach every hook: the model's layers behave as before training."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def state(self) -> dict[str, np.ndarray]:
        """Every factor as "component/layer/down|up" -> array (Paddle layout), for resume files."""
        return {
            f"{component}/{name}/{part}": layer.weight.numpy()
            for component, named in self.factors.items()
            for name, pair in named.items()
            for part, layer in zip(("down", "up"), pair, strict=True)
        }

    def set_state(self, state: dict) -> None:
        for key, value in self.state().items():
            component, name, part = key.split("/")
            layer = self.factors[component][name][part == "up"]
            if tuple(state[key].shape) != value.shape:
                raise ValueError(f"{key}: saved {state[key].shape}, now {value.shape}")
            layer.weight.set_value(np.asarray(state[key]))

    # -- files ----------------------------------------------------------------------------------

    def torch_factors(self):
        """(component, layer name, down, up) in torch layout: down [rank, in(, kh, kw)],
        up [out, rank(, 1, 1)]."""
        for component, named in self.factors.items():
            for name, (down, up) in named.items():
                d, u = down.weight.numpy(), up.weight.numpy()
                if d.ndim == 2:  # Paddle's Linear weight is [in, out]
                    d, u = d.T, u.T
                yield component, name, np.ascontiguousarray(d), np.ascontiguousarray(u)

    def kohya_state(self) -> dict[str, np.ndarray]:
        state = {}
        for component, name, down, up in self.torch_factors():
            key = KOHYA_PREFIX[component] + name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = down
            state[f"{key}.lora_up.weight"] = up
            state[f"{key}.alpha"] = np.asarray(self.alpha, np.float32)
        return state

    def diffusers_state(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """PEFT keys as diffusers' `save_lora_weights` writes them, and the header metadata
        (`lora_adapter_metadata`: r and lora_alpha per component) it reads alpha from."""
        state, metadata, modules = {}, {}, {}
        for component, name, down, up in self.torch_factors():
            # transformers 5 names CLIP's layers without the `text_model.` prefix
            module = name.removeprefix("text_model.") if component == "text_encoder" else name
            state[f"{component}.{module}.lora_A.weight"] = down
            state[f"{component}.{module}.lora_B.weight"] = up
            modules.setdefault(component, []).append(module)
        for component in self.factors:
            metadata[f"{component}.r"] = self.rank
            metadata[f"{component}.lora_alpha"] = self.alpha
            # full module paths: PEFT matches a target by suffix, and a short suffix such as
            # "0" (of "to_out.0") would also match layers that have no LoRA
            metadata[f"{component}.target_modules"] = sorted(modules.get(component, []))
        return state, {"format": "pt", "lora_adapter_metadata": json.dumps(metadata)}


def write_lora(lora: LoraSet, path, file_format: str, training: dict, tokens=None) -> None:
    """Write the factors as a .safetensors LoRA file (`kohya` or `diffusers`), with the
    training settings in the header (kohya's `ss_*` names where kohya has one).

    New tokens (`tokens`, pivotal tuning) go into a kohya file as A1111's bundled embeddings
    (`bundle_emb.<token>.string_to_param.*`, which A1111 and paddiff load with the LoRA); for
    the diffusers format, whose loader expects LoRA keys only, each token is written beside
    it as a textual-inversion file diffusers' `load_textual_inversion` reads
    (FILE.<n>.safetensors, n = 0, 1, ...: {token: rows})."""
    from pathlib import Path

    from paddiff.weights import save_state_dict

    if file_format == "kohya":
        state = lora.kohya_state()
        metadata = {
            "format": "pt",
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(lora.rank),
            "ss_network_alpha": str(lora.alpha),
        }
    elif file_format == "diffusers":
        state, metadata = lora.diffusers_state()
    else:
        raise ValueError(f"unknown LoRA file format {file_format!r}; formats: kohya, diffusers")
    metadata["paddiff_training"] = json.dumps(training, ensure_ascii=False, sort_keys=True)
    if tokens is not None and file_format == "kohya":
        state.update(tokens.bundle())
    save_state_dict(state, path, metadata)
    if tokens is not None and file_format == "diffusers":
        path = Path(path)
        for n, (token, rows) in enumerate(tokens.vectors().items()):
            save_state_dict({token: rows}, path.with_suffix(f".{n}.safetensors"), {"format": "pt"})
