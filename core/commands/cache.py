"""`paddiff cache list` / `paddiff cache clear`: the exported-program cache on disk."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="list the cached programs, most recently used first, with their sizes"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    clearing = actions.add_parser("clear", help="remove cached programs")
    clearing.add_argument(
        "--keep",
        metavar="SIZE",
        help="remove only the least recently used programs, until SIZE remains (e.g. 10G)",
    )
    for sub in (listing, clearing):
        sub.add_argument(
            "--cache-dir",
            type=Path,
            help="the cache folder (default: $PADDIFF_CACHE_DIR or ~/.cache/paddiff/exported)",
        )
    listing.set_defaults(run=run_list)
    clearing.set_defaults(run=run_clear)


def _root(args) -> Path:
    from paddiff.execution.cache import default_cache_dir

    return args.cache_dir or default_cache_dir()


def _gb(size: int) -> str:
    return f"{size / 2**30:.2f} GB"


def run_list(args) -> int:
    from paddiff.execution import cache_folder

    root = _root(args)
    listed = cache_folder.entries(root)
    if args.json:
        rows = [
            {**vars(e), "path": str(e.path)} for e in sorted(listed, key=lambda e: -e.last_used)
        ]
        print(json.dumps(rows, indent=2))
        return 0
    limit = cache_folder.cache_limit()
    total = sum(e.size for e in listed)
    print(f"{root}: {len(listed)} programs, {_gb(total)}", end="")
    print(f" (limit {_gb(limit)}, ${cache_folder.LIMIT_ENV})" if limit else " (no limit)")
    for entry in sorted(listed, key=lambda e: -e.last_used):
        print(f"  {entry.model}/{entry.program:40} {_gb(entry.size):>9}  {cache_folder.age(entry)}")
    return 0


def run_clear(args) -> int:
    from paddiff.execution import cache_folder

    root = _root(args)
    if args.keep is None:
        removed = cache_folder.entries(root)
        for entry in removed:
            cache_folder.remove(entry)
    else:
        removed = cache_folder.evict(root, max(1, cache_folder.parse_size(args.keep)))
    print(f"removed {len(removed)} programs, {_gb(sum(e.size for e in removed))}, from {root}")
    return 0
