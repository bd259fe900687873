"""Moving weights between PyTorch-layout NumPy state dicts and Paddle layers, strictly.

Paddle layers in paddiff are named so that `layer.state_dict()` keys equal the diffusers /
transformers keys. The one layout difference is `Linear`: torch stores its weight as
[out_features, in_features], Paddle as [in_features, out_features], so exactly the weights of
`paddle.nn.Linear` sublayers are transposed, in both directions. Convolutions, norms and
embeddings have the same layout in both frameworks.
"""

from __future__ import annotations

import numpy as np


class StateDictMismatchError(ValueError):
    """A weights file does not fit the network: keys missing, unexpected or of the wrong shape."""


def linear_weight_keys(layer) -> set[str]:
    """State-dict keys of the weights that Paddle stores transposed (those of Linear layers)."""
    import paddle

    return {
        f"{name}.weight" if name else "weight"
        for name, sub in layer.named_sublayers(include_self=True)
        if isinstance(sub, paddle.nn.Linear)
    }


def load_state_dict_into(layer, state, source_name: str, consume: bool = False) -> None:
    """Copy a torch-layout state dict into `layer`; every key must match in name and shape.

    `source_name` (usually the weights file) is named in the error, together with every missing,
    unexpected and mis-shaped key, so a wrong file or config is easy to spot. Nothing is copied
    unless everything fits. `state` is a dict of arrays or a lazy `paddiff.weights.StateDict`,
    whose tensors are then read one at a time, once. With `consume=True` a plain dict is emptied
    as its arrays are copied, so peak memory stays near one copy of the weights.
    """
    params = layer.state_dict()
    # ppdiffusers / paddlenlp files (layout "paddle") already store Linear weights as [in, out]
    torch_layout = getattr(state, "layout", "torch") == "torch"
    transposed = linear_weight_keys(layer) if torch_layout else set()
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    wrong_shape = []
    for key in sorted(set(params) & set(state)):
        expected = tuple(params[key].shape)
        if key in transposed:
            expected = expected[::-1]
        stored = _stored_shape(state, key)
        if stored != expected:
            wrong_shape.append(f"{key}: file {stored}, network {expected}")
    if missing or unexpected or wrong_shape:
        raise StateDictMismatchError(
            _mismatch_message(source_name, type(layer).__name__, missing, unexpected, wrong_shape)
        )
    if _defer(layer, params, state, transposed):
        return
    consume = consume and isinstance(state, dict)  # a lazy StateDict holds no copies
    for key, param in params.items():
        value = np.asarray(state.pop(key) if consume else state[key])
        if key in transposed:
            value = value.T
        param.set_value(np.ascontiguousarray(value, dtype=_numpy_dtype(param)))
        del value


def _defer(layer, params, state, transposed) -> bool:
    """While the loader defers weights (paddiff.execution.deferred), parameters stay empty and
    remember where their values are; buffers (small) are read now. False: read everything."""
    from paddiff.execution import deferred

    if not deferred.deferring() or not deferred.signable(state):
        return False
    parameters = {id(p) for p in layer.parameters()}
    source = deferred.PendingSource(state, transposed)
    deferred.note_deferred(layer)
    for key, param in params.items():
        if id(param) in parameters:
            deferred.defer(param, source, key)
        else:
            source.read(key, param)
    return True


def export_state_dict(layer) -> dict[str, np.ndarray]:
    """The layer's weights as a torch-layout NumPy state dict (the inverse of the above)."""
    from paddiff.execution.deferred import read_all_pending

    read_all_pending(layer)  # parameters a deferred load left empty
    transposed = linear_weight_keys(layer)
    out = {}
    for key, param in layer.state_dict().items():
        value = param.numpy()
        out[key] = np.ascontiguousarray(value.T if key in transposed else value)
    return out


def _stored_shape(state, key: str) -> tuple[int, ...]:
    """A lazy StateDict knows shapes from file headers; reading the tensor would cost a copy."""
    shape = getattr(state, "shape", None)
    return tuple(shape(key) if callable(shape) else state[key].shape)


def _numpy_dtype(param) -> np.dtype:
    return np.dtype(str(param.dtype).replace("paddle.", ""))


def _mismatch_message(source, network, missing, unexpected, wrong_shape, shown=10) -> str:
    lines = [f"{source} does not fit {network}:"]
    for title, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("keys with the wrong shape", wrong_shape),
    ):
        if keys:
            more = f" ... and {len(keys) - shown} more" if len(keys) > shown else ""
            lines.append(f"  {len(keys)} {title}: {', '.join(keys[:shown])}{more}")
    return "\n".join(lines)
