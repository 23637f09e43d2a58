"""`reconciler validate PATH... [--format text|json|github]`: CI validation of manifests.

Prints every diagnostic (text: `FILE:LINE:COL: error|warning: message`; github: workflow
annotations; json: a list of objects) on stdout and a one-line summary on stderr. Text and
github lines write control characters as escapes (`\\n`, `\\x1b`): one line per problem.
Exit 0 when valid (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reconciler.errors import Diagnostic, printable


def register(sub: Any) -> None:
    parser = sub.add_parser("validate", help="check manifests: schema and cross-references")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    parser.add_argument("--format", choices=("text", "json", "github"), default="text",
                        help="text: FILE:LINE:COL: error: message (default); json: a list of objects; "
                        "github: workflow annotations")
    parser.set_defaults(run=run)


def _github_escape(text: str, *, prop: bool = False) -> str:
    """A workflow command's data (`prop`: a property value), escaped as the runner and
    @actions/core's `escapeData`/`escapeProperty` do; control characters are first
    written out (`printable`) as in text output, so an annotation is one line too."""
    text = printable(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def render(diagnostics: list[Diagnostic], fmt: str) -> str:
    if fmt == "json":
        rows = [
            {"file": d.location.file, "line": d.location.line, "col": d.location.col, "severity": d.severity, "message": d.message}
            for d in diagnostics
        ]
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "github":
        return "".join(
            f"::{d.severity} file={_github_escape(d.location.file, prop=True)},line={d.location.line},"
            f"col={d.location.col}::{_github_escape(d.message)}\n"
            for d in diagnostics
        )
    return "".join(f"{d}\n" for d in diagnostics)


def run(args: argparse.Namespace) -> int:
    from reconciler.loader import load  # heavy (pydantic, networkx): only when the verb runs
    from reconciler.model import KINDS

    result = load(args.paths)
    sys.stdout.write(render(result.diagnostics, args.format))
    errors = len(result.errors)
    warnings = len(result.diagnostics) - errors
    if result.state is None:
        print(f"invalid: {errors} error(s), {warnings} warning(s) in {result.files} file(s)", file=sys.stderr)
        return 1
    count = sum(len(result.state.by_kind(kind)) for kind in KINDS)
    print(f"valid: {result.files} file(s), {count} resource(s), {warnings} warning(s)", file=sys.stderr)
    return 0
