"""Renaming state-dict keys between two layouts with a table of blocks.

A `Block` pairs a key prefix in diffusers' layout with the prefix of the same module in another
layout, plus renames of sub-modules inside it (`("norm1", "in_layers.0")`: diffusers calls the
first GroupNorm of a ResNet block `norm1`, the original code `in_layers.0`). Everything after the
matched part is kept as is, so one table entry covers a weight and its bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from paddiff.weights import StateDict, TensorInfo, WeightsFormatError


@dataclass(frozen=True)
class Block:
    diffusers: str
    original: str
    renames: tuple[tuple[str, str], ...] = ()  # (diffusers name, original name) inside the block


def _swap(name: str, pairs: list[tuple[str, str]]) -> str | None:
    for src, dst in pairs:
        if name == src or name.startswith(src + "."):
            return dst + name[len(src) :]
    return None


class KeyMap:
    """Both directions of a list of blocks. `to_diffusers(key)` is None for unknown keys."""

    def __init__(self, blocks: list[Block]):
        self.blocks = list(blocks)
        self._by_original = {b.original: b for b in blocks}
        self._by_diffusers = {b.diffusers: b for b in blocks}

    def to_diffusers(self, key: str) -> str | None:
        return self._map(key, self._by_original, original_side=True)

    def to_original(self, key: str) -> str | None:
        return self._map(key, self._by_diffusers, original_side=False)

    @staticmethod
    def _map(key: str, blocks: dict[str, Block], original_side: bool) -> str | None:
        parts = key.split(".")
        for cut in range(len(parts), 0, -1):  # the longest matching prefix wins
            block = blocks.get(".".join(parts[:cut]))
            if block is None:
                continue
            rest = ".".join(parts[cut:])
            if original_side:
                target, pairs = block.diffusers, [(o, d) for d, o in block.renames]
            else:
                target, pairs = block.original, list(block.renames)
            if rest:
                rest = _swap(rest, pairs) or rest
            return f"{target}.{rest}" if rest else target
        return None


def rename_state(
    state: StateDict,
    prefix: str,
    keymap: KeyMap,
    what: str,
    ignore=None,
    reshape=None,
) -> StateDict:
    """The tensors of `state` under `prefix`, renamed to diffusers keys (lazily, nothing is read).

    Keys under the prefix that the table does not know are an error naming them, so a checkpoint
    of another architecture is not loaded half-way. `ignore(key)` is true for keys (without the prefix) to leave out;
    `reshape(new_key, shape)` may return another shape for a tensor (1x1 convolution -> linear).
    """
    out = StateDict(state.layout, state.dtype.name if state.dtype is not None else None)
    unknown = []
    for key in state:
        if not key.startswith(prefix):
            continue
        inner = key[len(prefix) :]
        if ignore is not None and ignore(inner):
            continue
        new = keymap.to_diffusers(inner)
        if new is None:
            unknown.append(key)
            continue
        info = state.info(key)
        shape = (reshape and reshape(new, info.shape)) or info.shape
        read = state.reader(key)
        if shape != info.shape:
            read = (lambda r, s: lambda: r().reshape(s))(read, shape)
        out.add(new, TensorInfo(shape, info.dtype, info.file), read)
    if unknown:
        shown = ", ".join(unknown[:8]) + (
            f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        )
        raise WeightsFormatError(f"{state.files[0]}: unexpected {what} keys: {shown}")
    return out
