"""Files generated from the code and checked in (the man page, the completion scripts):
write them atomically, or with `--check` write nothing and name each one that drifted.

Called by the `main` of reconciler.cli.manpage and reconciler.cli.completion; the drift
test runs them with `--check`, as `reconciler schema --check` does for the schemas.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from reconciler.atomic import write_text_atomic


def _current(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):  # missing, unreadable or not text: differs
        return None


def write_or_check(files: Mapping[str, str], *, check: bool, command: str) -> int:
    """`files`: path -> wanted text. Exit status: 1 when checking and one differs, else 0."""
    drift = [path for path, text in sorted(files.items()) if _current(path) != text]
    if check:
        for path in drift:
            print(f"{path}: differs from the parser; run '{command}'", file=sys.stderr)
        return 1 if drift else 0
    for path in drift:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        write_text_atomic(path, files[path])
    print(f"{len(drift)} of {len(files)} file(s) written", file=sys.stderr)
    return 0
