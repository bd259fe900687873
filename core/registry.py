"""Finds components through entry points, loads them on first use, and isolates broken plugins.

Each kind of component has an entry-point group: `paddiff.text_encoders`, `paddiff.denoisers`,
`paddiff.vaes`, `paddiff.schedulers`, `paddiff.safety_filters`. paddiff's own components are
registered in its `setup.cfg` exactly as a third-party package registers its own.

Listing reads installed packages' metadata only; a plugin's module is imported the first time the
plugin is asked for, and the loaded class is cached. A plugin that fails to import, or whose class
lacks a method its interface requires, is recorded with its package and error; the others keep
working, and asking for it by name raises `BrokenPluginError` saying which package broke and why.

Name clashes (two packages registering the same name in one kind) always resolve the same way:

1. objects passed to `register()` in code;
2. paddiff's own built-ins, so installing a package never changes what an existing name means;
3. other packages, in alphabetical order of their normalised distribution name.

`"distribution:name"` (for example `"paddiff-example-scheduler:example-euler"`) always selects
exactly one entry, shadowed or not. Setting the environment variable
`PADDIFF_NO_THIRD_PARTY_PLUGINS=1` ignores every package but paddiff itself.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from paddiff.interfaces import KINDS

OWN_DISTRIBUTION = "paddiff"
IN_CODE = "(registered in code)"
NO_THIRD_PARTY_ENV = "PADDIFF_NO_THIRD_PARTY_PLUGINS"


class PluginError(Exception):
    """Base class for registry errors."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of that kind has that name."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class BrokenPluginError(PluginError):
    """The plugin is installed but could not be loaded."""


class PluginConformanceError(BrokenPluginError):
    """The plugin loaded, but does not provide what its interface requires."""


@dataclass
class PluginRecord:
    """One registered plugin, as `paddiff plugins list` shows it."""

    kind: str
    name: str
    target: str  # "module:attribute" for entry points
    distribution: str  # package that provides it, or IN_CODE
    version: str
    status: str = "available"  # available | loaded | broken | shadowed
    error: str | None = None
    shadowed_by: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"


def normalize_distribution(name: str) -> str:
    """PEP 503 normalisation, so `Paddiff_Example.Scheduler` equals `paddiff-example-scheduler`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def normalize_kind(kind: str) -> str:
    """Accept the group suffix ("schedulers"), the singular ("scheduler") or the full group."""
    key = kind.removeprefix("paddiff.").replace("-", "_")
    if key in KINDS:
        return key
    if key + "s" in KINDS:
        return key + "s"
    raise ValueError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")


def check_conformance(kind: str, obj: Any) -> list[str]:
    """What `obj` lacks to serve as a plugin of `kind` (an empty list when it conforms)."""
    kind = normalize_kind(kind)
    interface = KINDS[kind]
    if kind == "schedulers" and _is_sampler(obj):  # the function form (paddiff.sampling)
        return []
    if not isinstance(obj, type):
        return [f"expected a class implementing {interface.__name__}, got {type(obj).__name__}"]
    problems = []
    # Look in the class's own MRO: every class object is callable through its metaclass, so
    # getattr(cls, "__call__") would find type.__call__ and prove nothing.
    defined = {name for klass in obj.__mro__ if klass is not object for name in vars(klass)}
    missing = [m for m in interface.required_methods if m not in defined]
    if missing:
        problems.append(f"missing {', '.join(missing)} (required by {interface.__name__})")
    abstract = sorted(getattr(obj, "__abstractmethods__", ()))
    if abstract:
        problems.append(f"abstract methods not implemented: {', '.join(abstract)}")
    return problems


def _is_sampler(obj: Any) -> bool:
    """A `paddiff.sampling.Sampler` (checked without importing NumPy for other kinds)."""
    from paddiff.sampling.sampler import Sampler

    return isinstance(obj, Sampler)


class _Entry:
    """A record plus what is needed to load it: an entry point, or an object given in code."""

    def __init__(self, record: PluginRecord, entry_point=None, obj=None):
        self.record = record
        self.entry_point = entry_point
        self.obj = obj  # set once loaded (or from the start for register())


class Registry:
    """The plugins visible on `paths` (default: `sys.path`), plus those registered in code."""

    def __init__(self, paths: list[str] | None = None, third_party: bool | None = None):
        self._paths = paths
        if third_party is None:
            third_party = os.environ.get(NO_THIRD_PARTY_ENV, "").strip() in ("", "0", "false")
        self._third_party = third_party
        self._discovered: dict[str, list[_Entry]] | None = None
        self._in_code: dict[str, dict[str, _Entry]] = {kind: {} for kind in KINDS}

    # -- discovery -------------------------------------------------------------------------

    def _entries(self) -> dict[str, list[_Entry]]:
        if self._discovered is None:
            self._discovered = self._discover()
        return self._discovered

    def _discover(self) -> dict[str, list[_Entry]]:
        found: dict[str, list[_Entry]] = {kind: [] for kind in KINDS}
        groups = {f"paddiff.{kind}": kind for kind in KINDS}
        seen_distributions = set()
        dists = (
            metadata.distributions(path=self._paths) if self._paths else metadata.distributions()
        )
        for dist in dists:
            dist_name = normalize_distribution(dist.metadata["Name"] or "")
            # The first copy of a distribution on the path is the one Python imports; later
            # copies (an old install shadowed by an editable one, say) are ignored, like imports.
            if not dist_name or dist_name in seen_distributions:
                continue
            seen_distributions.add(dist_name)
            if dist_name != OWN_DISTRIBUTION and not self._third_party:
                continue
            for ep in dist.entry_points:
                kind = groups.get(ep.group)
                if kind is None:
                    continue
                record = PluginRecord(kind, ep.name, ep.value, dist_name, dist.version or "")
                found[kind].append(_Entry(record, entry_point=ep))
        for entries in found.values():
            entries.sort(key=lambda e: _precedence(e.record.distribution))
            _mark_shadowed(entries)
        return found

    def _all(self, kind: str) -> list[_Entry]:
        """Entries of one kind in precedence order: in-code first, then discovered."""
        return list(self._in_code[kind].values()) + self._entries()[kind]

    # -- public API --------------------------------------------------------------------------

    def list(self, kind: str | None = None) -> list[PluginRecord]:
        """Records of every plugin (of one kind, if given), without importing any plugin."""
        kinds = [normalize_kind(kind)] if kind else list(KINDS)
        return [entry.record for k in kinds for entry in self._all(k)]

    def names(self, kind: str) -> list[str]:
        """The names that `get(kind, name)` accepts without a distribution prefix."""
        return sorted({entry.record.name for entry in self._all(normalize_kind(kind))})

    def get(self, kind: str, name: str) -> Any:
        """The plugin class registered as `name` (or `distribution:name`), loaded and checked."""
        kind = normalize_kind(kind)
        return self._load(self._find(kind, name))

    def register(self, kind: str, name: str, obj: Any, replace: bool = False) -> None:
        """Register `obj` under `name` from code (tests, notebooks, unpackaged plugins).

        It takes precedence over entry points of the same name. Registering a name twice is an
        error unless `replace=True`.
        """
        kind = normalize_kind(kind)
        problems = check_conformance(kind, obj)
        if problems:
            raise PluginConformanceError(
                f"cannot register {name!r} as a {_singular(kind)}: {'; '.join(problems)}"
            )
        if name in self._in_code[kind] and not replace:
            raise ValueError(
                f"a {_singular(kind)} named {name!r} is already registered in code; "
                "pass replace=True to replace it"
            )
        target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
        record = PluginRecord(kind, name, target, IN_CODE, "", status="loaded")
        self._in_code[kind][name] = _Entry(record, obj=obj)
        for entry in self._entries()[kind]:
            if entry.record.name == name and entry.record.shadowed_by is None:
                entry.record.status, entry.record.shadowed_by = "shadowed", IN_CODE

    def unregister(self, kind: str, name: str) -> None:
        """Undo `register` (the entry points it shadowed become visible again)."""
        kind = normalize_kind(kind)
        del self._in_code[kind][name]
        for entry in self._entries()[kind]:
            record = entry.record
            if record.shadowed_by == IN_CODE:
                record.shadowed_by = None
                record.status = (
                    "broken" if record.error else ("loaded" if entry.obj else "available")
                )

    # -- internals ---------------------------------------------------------------------------

    def _find(self, kind: str, name: str) -> _Entry:
        entries = self._all(kind)
        if ":" in name:
            dist, _, plain = name.partition(":")
            dist = normalize_distribution(dist)
            for entry in entries:
                if (
                    entry.record.name == plain
                    and normalize_distribution(entry.record.distribution) == dist
                ):
                    return entry
        else:
            for entry in entries:  # already in precedence order
                if entry.record.name == name:
                    return entry
        raise UnknownPluginError(_unknown_message(kind, name, entries))

    def _load(self, entry: _Entry) -> Any:
        record = entry.record
        if entry.obj is not None:
            return entry.obj
        if record.status == "broken":
            raise BrokenPluginError(_broken_message(record))
        try:
            obj = entry.entry_point.load()
        except Exception as exc:  # any failure inside a plugin's import is the plugin's
            record.status, record.error = "broken", f"{type(exc).__name__}: {exc}"
            raise BrokenPluginError(_broken_message(record)) from exc
        problems = check_conformance(record.kind, obj)
        if problems:
            record.status, record.error = "broken", "; ".join(problems)
            raise PluginConformanceError(_broken_message(record))
        entry.obj = obj
        if record.status == "available":
            record.status = "loaded"
        return obj


def _precedence(distribution: str) -> tuple[int, str]:
    return (0 if distribution == OWN_DISTRIBUTION else 1, distribution)


def _mark_shadowed(entries: list[_Entry]) -> None:
    winner: dict[str, str] = {}
    for entry in entries:
        name = entry.record.name
        if name in winner:
            entry.record.status, entry.record.shadowed_by = "shadowed", winner[name]
        else:
            winner[name] = entry.record.distribution


def _singular(kind: str) -> str:
    return {
        "safety_filters": "safety filter",
        "text_encoders": "text encoder",
        "lora_formats": "LoRA format",
        "controlnets": "control net",
    }.get(kind, kind[:-1])


def _unknown_message(kind: str, name: str, entries: list[_Entry]) -> str:
    names = sorted({e.record.name for e in entries})
    qualified = sorted({e.record.qualified_name for e in entries})
    plain = name.partition(":")[2] or name
    close = difflib.get_close_matches(plain.lower(), [n.lower() for n in names], n=1, cutoff=0.5)
    message = f"no {_singular(kind)} named {name!r} (entry-point group paddiff.{kind})."
    if close:
        message += f" Did you mean {next(n for n in names if n.lower() == close[0])!r}?"
    if qualified:
        message += " Available: " + ", ".join(qualified) + "."
    else:
        message += " No plugins of this kind are installed."
    return message


def _broken_message(record: PluginRecord) -> str:
    return (
        f"{_singular(record.kind)} {record.name!r} from package {record.distribution!r} "
        f"{record.version} (entry point {record.name} = {record.target}) is broken: {record.error}"
    )


_default_registry: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry that `paddiff.get` and friends use."""
    global _default_registry
    if _default_registry is None:
        _default_registry = Registry()
    return _default_registry


def get(kind: str, name: str) -> Any:
    """Shortcut for `default_registry().get(kind, name)`."""
    return default_registry().get(kind, name)


def register(kind: str, name: str, obj: Any, replace: bool = False) -> None:
    """Shortcut for `default_registry().register(kind, name, obj, replace)`."""
    default_registry().register(kind, name, obj, replace=replace)


def list_plugins(kind: str | None = None) -> list[PluginRecord]:
    """Shortcut for `default_registry().list(kind)`."""
    return default_registry().list(kind)
