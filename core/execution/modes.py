"""The execution choice for a whole model: dynamic graph, exported programs, or "auto".

`set_execution` is the one place a mode is applied, to anything that declares networks
(`component.networks()`) or to `Network`s directly; the loader, `load_pipeline` (for the image
safety checker), `paddiff export` and the tests all go through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from paddiff.execution.network import Network

#: "auto" is static for networks of at least AUTO_STATIC_MIN_PARAMETERS parameters (with a fall-back
#: to the dynamic graph when one cannot be exported or memory is short) and dynamic for smaller ones.
EXECUTION_MODES = ("auto", "static", "dynamic")
#: Below this, oneDNN's fixed costs per call outweigh what it saves: the embedded model's UNet
#: (1.7 M parameters) ran 8 steps in 0.35 s in the dynamic graph against 0.49-0.56 s exported,
#: while SD 1.5's (860 M) ran 1.7x faster exported (docs/performance.md).
AUTO_STATIC_MIN_PARAMETERS = 10_000_000
EXECUTION_ENV = "PADDIFF_EXECUTION"


def resolve_execution(execution: str | None = None) -> str:
    """The execution mode asked for: the argument, else $PADDIFF_EXECUTION, else "auto"."""
    mode = execution or os.environ.get(EXECUTION_ENV) or "auto"
    if mode not in EXECUTION_MODES:
        source = "execution=" if execution else f"${EXECUTION_ENV}"
        raise ValueError(f"{source} {mode!r} is not one of {', '.join(EXECUTION_MODES)}")
    return mode


def networks_of(component: Any) -> list[Network]:
    """The networks a component declares (`networks()`); none for components without any
    (schedulers, prompt filters, NumPy-only plugins)."""
    declare = getattr(component, "networks", None)
    if declare is None:
        return []
    networks = list(declare())
    for network in networks:
        if not isinstance(network, Network):
            raise TypeError(
                f"{type(component).__name__}.networks() must return paddiff.execution.Network "
                f"objects, got {type(network).__name__}"
            )
    return networks


def set_execution(
    targets: Any,
    execution: str | None = None,
    cache_dir=None,
    precision: str | None = None,
    *,
    cache=None,
    runtime: str | None = None,
) -> Any:
    """Run every network of `targets` in `execution` mode; returns `targets`.

    targets:   a component, a `Network`, or a dict / list of them (e.g. `load_components`'
               result).
    execution: "auto" (default; or $PADDIFF_EXECUTION), "static" or "dynamic".
    cache_dir: where exported programs are kept (default $PADDIFF_CACHE_DIR, then
               ~/.cache/paddiff/exported); `cache=` gives a ready `ExportCache` instead.
    precision: "fp32" (default; or $PADDIFF_PRECISION) or "bf16", for exported programs.
    runtime:   the back end that runs them ("auto", the default, or $PADDIFF_RUNTIME;
               paddiff.execution.runtimes).
    """
    from paddiff.execution.cache import ExportCache

    mode = resolve_execution(execution)
    # one cache for all networks; its predictors use $PADDIFF_THREADS or every allowed core
    if mode != "dynamic" and cache is None:
        cache = ExportCache(cache_dir, precision=precision, runtime=runtime)
    for network in _networks(targets):
        if mode == "dynamic" or (
            mode == "auto" and network.parameter_count() < AUTO_STATIC_MIN_PARAMETERS
        ):
            network.use_dynamic()
        else:
            network.use_static(cache, fallback=mode == "auto")
    return targets


def _networks(targets: Any) -> Iterable[Network]:
    if isinstance(targets, Network):
        return [targets]
    if isinstance(targets, dict):
        targets = targets.values()
    elif not isinstance(targets, (list, tuple)):
        targets = [targets]
    return [n for t in targets for n in ([t] if isinstance(t, Network) else networks_of(t))]
