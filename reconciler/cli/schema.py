"""`reconciler schema [--out DIR] [--check]`: write or verify the JSON Schemas.

Writes each file atomically into DIR (made if missing; a path that exists and is not a
directory is refused, so `--out /etc/passwd` replaces nothing); with --check writes nothing and exits 1 naming every file
that differs from the models (drift), 0 when all match.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from reconciler.atomic import write_text_atomic
from reconciler.errors import UsageError


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
    except (OSError, UnicodeDecodeError):  # unreadable or not text: differs, and is replaced
        return ""


def _directory(out: str, *, make: bool) -> None:
    """`--out` names the schema directory (DESIGN 6): a path that exists and is not a
    directory (`--out /etc/passwd`) is refused, never written into or replaced."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory; --out names the schema directory, e.g. schemas")
    if make:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot make the schema directory ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    from reconciler.schema import all_schemas  # imports the models: only when the verb runs

    _directory(args.out, make=not args.check)
    wanted = all_schemas()
    drift = [name for name, text in sorted(wanted.items()) if _current(os.path.join(args.out, name)) != text]
    if args.check:
        for name in drift:
            print(f"{os.path.join(args.out, name)}: differs from the models; run 'reconciler schema'", file=sys.stderr)
        return 1 if drift else 0
    for name in drift:
        try:
            write_text_atomic(os.path.join(args.out, name), wanted[name])
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write {name} ({exc.strerror or exc})") from None
    print(f"{len(drift)} of {len(wanted)} schema file(s) written to {args.out}", file=sys.stderr)
    return 0
