"""`paddiff plugins list`: what is installed, from which package, and whether it loads."""

from __future__ import annotations

import json

from paddiff import registry

HELP = "list the installed components (plugins) and their status"


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help=HELP, description=HELP)
    listing.add_argument(
        "--kind",
        help="only this kind: text_encoders, denoisers, vaes, schedulers or safety_filters",
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
    rows = [("KIND", "NAME", "DISTRIBUTION", "STATUS", "ERROR")]
    for r in records:
        status = f"shadowed by {r.shadowed_by}" if r.status == "shadowed" else r.status
        dist = f"{r.distribution} {r.version}".strip()
        rows.append((r.kind, r.name, dist, status, r.error or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
        )
    if len(rows) == 1:
        print("(no plugins installed)")
    return 0


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
    }
