"""`--color auto|always|never` and when the CLI's text output is coloured.

CLI layer, read by `plan` and `apply` (the verbs whose text output has colour; JSON,
markdown, dot and mermaid never do). `auto` (the default) colours only a terminal, and
only when NO_COLOR is unset or empty (no-color.org: a non-empty value disables colour)
and TERM is not `dumb`; `always` colours even a pipe or a file, whatever NO_COLOR says
(a flag given on the command line overrides it, as no-color.org asks); `never` does not.
"""

from __future__ import annotations

import argparse
import os
from typing import IO

CHOICES = ("auto", "always", "never")


def add_color_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--color", choices=CHOICES, default="auto",
                        help="colour the text output: auto (default: on a terminal, unless NO_COLOR is set "
                             "non-empty or TERM=dumb), always (also in pipes and files), never")


def wants_colour(args: argparse.Namespace, stream: IO[str] | None) -> bool:
    """Whether to colour text written to `stream` (None: a file named by --out)."""
    choice = getattr(args, "color", "auto")
    if choice != "auto":
        return bool(choice == "always")
    env = os.environ
    return (stream is not None and stream.isatty() and not env.get("NO_COLOR")
            and env.get("TERM") != "dumb")


def paint(text: str, code: str, colour: bool) -> str:
    """`text` in the SGR colour `code` (`1;31`: bold red) when `colour`."""
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text
