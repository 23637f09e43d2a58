"""Shell completion: `reconciler --print-completion bash|zsh|tcsh` prints a static script.

shtab writes the script from the argparse tree (verbs, options, `choices` such as the
`--format`s), so a Tab press runs no Python (argcomplete would start the interpreter and
import every verb each time). Which arguments complete file or directory names is read
from their metavar here, in one place, so a new `--out DIR` completes directories without
touching its verb. shtab is imported only when a script is printed: not on every run.
`python -m reconciler.cli.completion [--check]` writes or checks the copies in
completions/ that the wheel installs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

SHELLS = ("bash", "zsh", "tcsh")
# The metavars that name a file or directory; every other argument completes its
# `choices`, or nothing (VM names, hosts, BDFs are not known before a host is read).
FILE_METAVARS = frozenset({"PATH", "FILE"})
DIR_METAVARS = frozenset({"DIR"})
# Where the wheel installs each script (pyproject's data-files) and under which name:
# bash-completion loads `completions/<command>` on first Tab; zsh autoloads `_<command>`
# from its fpath. tcsh has no such directory: `--print-completion tcsh` only.
INSTALLED = {"bash": "reconciler", "zsh": "_reconciler"}


class PrintCompletion(argparse.Action):
    """`--print-completion SHELL`: print the script for the whole parser and exit 0,
    like `--version` (the verb that is otherwise required is not asked for)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        sys.stdout.write(script(parser, str(values)))
        parser.exit(0)


def add_completion_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-completion", choices=SHELLS, action=PrintCompletion, metavar="SHELL",
                        help="print the completion script for SHELL (bash, zsh or tcsh) and exit; e.g. "
                        "'reconciler --print-completion bash > ~/.local/share/bash-completion/completions/reconciler'")


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of `parser` for `shell`; deterministic (same parser, same text)."""
    import shtab  # 30 ms of imports, paid only here

    for action in _all_actions(parser):
        metavar = action.metavar if isinstance(action.metavar, str) else None
        if metavar in FILE_METAVARS:
            setattr(action, "complete", shtab.FILE)  # shtab reads this attribute
        elif metavar in DIR_METAVARS:
            setattr(action, "complete", shtab.DIRECTORY)
    text: str = shtab.complete(parser, shell)
    return text if text.endswith("\n") else text + "\n"


def _all_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every argument of `parser` and of its verbs, nested ones (`sim serve`) included.
    argparse keeps sub-parsers nowhere public (as reconciler.cli.main._parsers says)."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from _all_actions(sub)


def installed_scripts() -> dict[str, str]:
    """File name under completions/ -> its text, for every script the wheel installs."""
    from reconciler.cli.main import build_parser

    return {name: script(build_parser(), shell) for shell, name in INSTALLED.items()}


def main(argv: Sequence[str] | None = None) -> int:
    from reconciler.cli.generated import write_or_check

    parser = argparse.ArgumentParser(prog="python -m reconciler.cli.completion",
                                     description="Write or check the completion scripts the wheel installs.")
    parser.add_argument("--out", default="completions", metavar="DIR", help="directory (default: completions)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    files = {os.path.join(args.out, name): text for name, text in installed_scripts().items()}
    return write_or_check(files, check=args.check, command=f"python -m reconciler.cli.completion --out {args.out}")


if __name__ == "__main__":
    sys.exit(main())
