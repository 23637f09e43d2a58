"""`plan --format svg`: the dot graph drawn by Graphviz's own `dot` program.

Graphviz is optional (a Debian package, not a Python dependency): `dot -Tsvg` runs as an
argv list, never a shell, reading the dot text on stdin; when `dot` is not installed the
error says how to get it, or to ask for `--format dot` and draw it elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess

from reconciler.errors import UsageError

MISSING = ("--format svg needs Graphviz's `dot` program, which is not on PATH: install graphviz "
           "(apt-get install graphviz), or use --format dot and draw it elsewhere")


def dot_program() -> str:
    """The path of Graphviz's `dot` on PATH; UsageError saying how to get it when it is missing."""
    program = shutil.which("dot")
    if program is None:
        raise UsageError(MISSING)
    return program


def dot_to_svg(dot: str) -> str:
    """The SVG `dot -Tsvg` draws from this dot text; UsageError when dot is missing or fails."""
    program = dot_program()
    try:
        done = subprocess.run([program, "-Tsvg"], input=dot, capture_output=True, text=True, check=False)
    except OSError as exc:  # found but not runnable (permissions, a broken link)
        raise UsageError(f"--format svg: cannot run {program} ({exc.strerror or exc}); {MISSING.split(': ', 1)[1]}") from None
    if done.returncode != 0:
        problem = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise UsageError(f"--format svg: {program} failed: {problem}")
    return done.stdout
