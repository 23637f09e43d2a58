"""`reconciler import [--host H | --observed FILE] [--vm NAME...] [--out DIR] [--force]`:
manifests for the domains the reconciler does not manage (DESIGN 6).

CLI layer: observes the selected host or reads a captured dump (as `observe` does),
turns each unmanaged domain into one manifest with `adopt: true`
(`reconciler.importer`), and prints them to stdout as one multi-document YAML stream,
or writes them into `--out DIR` as `<name>.yaml` (atomically, mode 0644; DIR is made
when missing). A file there that already holds other text is refused, before anything
is written, unless `--force`: it may be a manifest someone edited since the last
import. A file holding the same text is left as it is. Domains no manifest can be
written for (no memory shown) are named on stderr. Exit 0, or 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="write manifests (with adopt: true) for the domains the reconciler does not manage",
        description="Write one manifest per domain another toolstack built, with everything the host (or a "
        "captured xenstore-ls dump) shows and adopt: true, so apply takes the domains over without restarting "
        "them. Each file says in a comment what could not be observed and which default it holds.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)")
    source.add_argument("--observed", metavar="FILE", help="a captured xenstore-ls, -f or -fp dump")
    parser.add_argument("--vm", metavar="NAME", nargs="+", action="extend",
                        help="import only these domains (their name on the host or in the manifest); default: all")
    parser.add_argument("--out", metavar="DIR", help="write <name>.yaml files into DIR instead of printing them")
    parser.add_argument("--force", action="store_true",
                        help="with --out: replace files that hold other text (default: refuse)")
    parser.set_defaults(run=run)


def _source(args: argparse.Namespace) -> str:
    from reconciler.cli.hosts import select_host

    return f"the dump {args.observed}" if args.observed is not None else f"host {select_host(args.host)}"


def write_files(files: dict[str, str], out: str, *, force: bool) -> list[str]:
    """Write `files` into `out` atomically; refuse (UsageError, nothing written) when
    one exists with other text and not `force`. Returns the paths written."""
    from reconciler.atomic import write_text_atomic
    from reconciler.errors import UsageError

    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: not a directory")
    pending: list[tuple[str, str]] = []
    for name, text in files.items():
        path = os.path.join(out, name)
        try:
            with open(path, encoding="utf-8") as handle:
                current: str | None = handle.read()
        except FileNotFoundError:
            current = None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--out {out}: cannot read {path}: {exc}") from None
        if current == text:
            continue
        if current is not None and not force:
            raise UsageError(f"--out {out}: {path} exists and differs from the import (edited since?); "
                             "nothing written; use --force to replace it")
        pending.append((path, text))
    try:
        os.makedirs(out, exist_ok=True)
        for path, text in pending:
            write_text_atomic(path, text, 0o644)
    except OSError as exc:
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None
    return [path for path, _ in pending]


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.hosts import observe_selected
    from reconciler.cli.observe import observe_dump
    from reconciler.errors import UsageError
    from reconciler.importer import import_manifests, skipped

    if args.force and args.out is None:
        raise UsageError("--force: only with --out DIR (stdout is never refused)")
    state = observe_dump(args.observed) if args.observed is not None else observe_selected(args.host)
    files = import_manifests(state, args.vm, source=_source(args))
    for reason in skipped(state).values():
        print(f"reconciler: note: {reason}", file=sys.stderr)
    if not files:
        print("reconciler: note: no domain to import: every domain is managed by the reconciler (or unreadable)",
              file=sys.stderr)
    if args.out is None:
        sys.stdout.write("".join(f"---\n{text}" for text in files.values()))
        return 0
    written = write_files(files, args.out, force=args.force)
    print(f"imported {len(files)} domain(s) into {args.out}: {len(written)} file(s) written, "
          f"{len(files) - len(written)} unchanged", file=sys.stderr)
    return 0
