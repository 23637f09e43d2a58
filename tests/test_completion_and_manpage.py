"""Every option of every verb has a help text: `--help` and the man page print it, and a
missing one shows as a blank (issue 15's packaging point)."""

from __future__ import annotations

import argparse

from reconciler.cli.main import build_parser


def _actions(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for verb, sub in action.choices.items():
                assert helps.get(verb), f"{name} {verb}: no help= in add_parser"
                found += _actions(sub, f"{name} {verb}")
        else:
            found.append((name, action))
    return found


def test_every_option_of_every_verb_has_help() -> None:
    """The man page and --help print each option's help; a missing one shows as a blank."""
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, action in _actions(build_parser(), "reconciler") if not action.help]
    assert missing == []
