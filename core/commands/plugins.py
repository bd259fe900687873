"""`paddiff plugins list`: what is installed, from which package, and whether it loads."""

from __future__ import annotations

import json

from paddiff import registry
from paddiff.scheduler_names import aliases_for

HELP = "list the installed components (plugins) and their status"  # for `plugins list`


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help=HELP, description=HELP)
    listing.add_argument(
        "--kind",
        help="only this kind: text_encoders, denoisers, vaes, schedulers, safety_filters, "
        "lora_formats, controlnets, preprocessors or runtimes",
    )
    listing.add_argument(
        "--check",
        action="store_true",
        help="import every plugin and check it against its interface (slower: imports Paddle)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)


def run_list(args) -> int:
    try:
        kind = registry.normalize_kind(args.kind) if args.kind else None
    except ValueError as exc:
        raise registry.PluginError(str(exc)) from None
    reg = registry.default_registry()
    records = reg.list(kind)
    if args.check:
        for record in records:
            if record.status != "shadowed":
                try:
                    reg.get(record.kind, record.qualified_name)
                except registry.BrokenPluginError:
                    pass  # recorded in record.status / record.error
    if args.json:
        print(json.dumps([_as_dict(r) for r in records], indent=2, ensure_ascii=False))
        return 0
    # Schedulers also answer to short and WebUI names (`euler-a`, `dpm++2m-karras`, ...).
    with_aliases = any(r.kind == "schedulers" for r in records)
    header = ("KIND", "NAME", "DISTRIBUTION", "STATUS") + (("ALIASES",) if with_aliases else ())
    rows = [header + ("ERROR",)]
    for r in records:
        status = f"shadowed by {r.shadowed_by}" if r.status == "shadowed" else r.status
        dist = f"{r.distribution} {r.version}".strip()
        aliases = (",".join(_aliases(r)),) if with_aliases else ()
        rows.append((r.kind, r.name, dist, status, *aliases, r.error or ""))
    columns = len(header)
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    for row in rows:
        cells = zip(row[:columns], widths, strict=True)
        print("  ".join(cell.ljust(w) for cell, w in cells) + "  " + row[columns])
    if len(rows) == 1:
        print("(no plugins installed)")
    return 0


def _aliases(record: registry.PluginRecord) -> list[str]:
    """Aliases of built-in schedulers (a third-party plugin that shadows one inherits none)."""
    if record.kind != "schedulers" or record.distribution != registry.OWN_DISTRIBUTION:
        return []
    return aliases_for(record.name)


def _as_dict(record: registry.PluginRecord) -> dict:
    return {
        "kind": record.kind,
        "name": record.name,
        "target": record.target,
        "distribution": record.distribution,
        "version": record.version,
        "status": record.status,
        "shadowed_by": record.shadowed_by,
        "error": record.error,
        "aliases": _aliases(record),
    }
