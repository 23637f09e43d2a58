"""`reconciler schema [--out DIR] [--check]`: write or verify the JSON Schemas.

Writes each file atomically; with --check writes nothing and exits 1 naming every file
that differs from the models (drift), 0 when all match.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from reconciler.atomic import write_text_atomic


def register(sub: Any) -> None:
    parser = sub.add_parser("schema", help="write or check the JSON Schemas in schemas/")
    parser.add_argument("--out", default="schemas", metavar="DIR", help="schema directory (default: schemas)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    parser.set_defaults(run=run)


def _current(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def run(args: argparse.Namespace) -> int:
    from reconciler.schema import all_schemas  # imports the models: only when the verb runs

    wanted = all_schemas()
    drift = [name for name, text in sorted(wanted.items()) if _current(os.path.join(args.out, name)) != text]
    if args.check:
        for name in drift:
            print(f"{os.path.join(args.out, name)}: differs from the models; run 'reconciler schema'", file=sys.stderr)
        return 1 if drift else 0
    os.makedirs(args.out, exist_ok=True)
    for name in drift:
        write_text_atomic(os.path.join(args.out, name), wanted[name])
    print(f"{len(drift)} of {len(wanted)} schema file(s) written to {args.out}", file=sys.stderr)
    return 0
