"""Shell completion and the man page, as a user meets them (issue 15's packaging point):
the real CLI prints the script, real `bash` sources it and completes with it; real
`groff -ww` and `man` render the page with no warning. The checked-in copies
(completions/, man/reconciler.1) match the parser, like `reconciler schema --check`.
Every option has a help text (`--help` and the page print it). Nothing is faked."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import plan
from reconciler.cli.main import build_parser
from reconciler.cli.manpage import esc, render_manpage

REPO = Path(__file__).resolve().parents[1]

def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def complete(script: Path, words: list[str], cwd: Path) -> list[str]:
    """What bash offers after `words` (the last one is being typed), through the
    completion function the script registered for `reconciler`, as on a Tab press."""
    line = " ".join(words)
    program = (
        'source "$1"; shift\n'
        'COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}\n'
        'fn=$(complete -p reconciler | sed -E "s/.* -F ([^ ]+) .*/\\1/")\n'
        '"$fn" reconciler "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program, "complete", str(script), *words],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr, (line, done.stderr)
    return [word for word in done.stdout.splitlines() if word]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    printed = cli("--print-completion", "bash")
    assert printed.returncode == 0, printed.stderr
    path = tmp_path_factory.mktemp("completion") / "reconciler.bash"
    path.write_text(printed.stdout)
    return path


def test_bash_completes_verbs_options_and_formats(bash_script: Path, tmp_path: Path) -> None:
    assert complete(bash_script, ["reconciler", "pl"], tmp_path) == ["plan"]
    assert complete(bash_script, ["reconciler", "sim", "se"], tmp_path) == ["serve"]
    assert sorted(complete(bash_script, ["reconciler", "plan", "--format", ""], tmp_path)) == sorted(plan.FORMATS)
    assert complete(bash_script, ["reconciler", "-v", "plan", "--det"], tmp_path) == ["--detailed-exitcode"]
    assert complete(bash_script, ["reconciler", "--print-completion", "z"], tmp_path) == ["zsh"]


def test_bash_completes_files_for_paths_and_directories_for_dirs(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "dump.txt").write_text("")
    assert sorted(complete(bash_script, ["reconciler", "plan", ""], tmp_path)) == ["dump.txt", "manifests"]
    assert sorted(complete(bash_script, ["reconciler", "plan", "--observed", "d"], tmp_path)) == ["dump.txt"]
    assert complete(bash_script, ["reconciler", "schema", "--out", ""], tmp_path) == ["manifests"]
    assert complete(bash_script, ["reconciler", "sim", "list", "--state", "m"], tmp_path) == ["manifests"]


@pytest.mark.parametrize("shell, marker", [("zsh", "#compdef reconciler"), ("tcsh", "complete reconciler")])
def test_print_completion_for_zsh_and_tcsh(shell: str, marker: str) -> None:
    printed = cli("--print-completion", shell)
    assert printed.returncode == 0 and printed.stderr == ""
    assert marker in printed.stdout and "plan" in printed.stdout


def test_an_unknown_shell_is_one_line_and_exit_1() -> None:
    printed = cli("--print-completion", "fish-and-chips")
    assert printed.returncode == 1 and printed.stdout == ""
    assert len(printed.stderr.splitlines()) == 1 and "bash" in printed.stderr


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



def test_checked_in_scripts_match_the_parser(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "reconciler.cli.completion"]
    done = subprocess.run([*run, "--check"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "completions"
    assert subprocess.run([*run, "--out", str(out)], cwd=REPO, capture_output=True, timeout=120,
                          check=False).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["_reconciler", "reconciler"]
    (out / "reconciler").write_text("# edited\n")
    drift = subprocess.run([*run, "--out", str(out), "--check"], cwd=REPO, capture_output=True, text=True,
                           timeout=120, check=False)
    assert drift.returncode == 1
    assert drift.stderr == (f"{out / 'reconciler'}: differs from the parser; "
                            f"run 'python -m reconciler.cli.completion --out {out}'\n")


def test_checked_in_man_page_matches_the_parser() -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler.cli.manpage", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_check_names_a_drifted_file_and_the_command(tmp_path: Path) -> None:
    page = tmp_path / "reconciler.1"
    run = [sys.executable, "-m", "reconciler.cli.manpage", "--out", str(page)]
    assert subprocess.run(run, cwd=REPO, capture_output=True, timeout=120, check=False).returncode == 0
    assert subprocess.run([*run, "--check"], cwd=REPO, capture_output=True, timeout=120, check=False).returncode == 0
    page.write_text(page.read_text().replace("EXIT STATUS", "EXIT"))
    drift = subprocess.run([*run, "--check"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert drift.returncode == 1
    assert drift.stderr == f"{page}: differs from the parser; run 'python -m reconciler.cli.manpage --out {page}'\n"


def groff(page: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "GROFF_NO_SGR": "1"})


def _plain(rendered: str) -> str:
    """grotty's overstrike bold/underline (x\\bx, _\\bx) as plain text."""
    out: list[str] = []
    for char in rendered:
        if char == "\b":
            out.pop()
        elif not (out and out[-1] == "\b"):
            out.append(char)
    return "".join(out)


def test_groff_renders_the_page_without_a_warning_and_shows_every_option() -> None:
    rendered = groff(REPO / "man/reconciler.1")
    assert rendered.returncode == 0 and rendered.stderr == ""
    text = _plain(rendered.stdout)
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES",
                    "SEE ALSO"):
        assert f"\n{heading}\n" in text
    for name, action in _actions(build_parser(), "reconciler"):
        assert f"   {name}\n" in text or name == "reconciler", name  # each verb's subsection heading
        for option in action.option_strings:
            assert option in text, f"{name} {option}"
    assert "RECONCILER_HOST" in text and "NO_COLOR" in text and "xenstore-ls(1)" in text


def test_man_reads_the_page() -> None:
    shown = subprocess.run(["man", "-P", "cat", "-l", str(REPO / "man/reconciler.1")], capture_output=True, text=True,
                           timeout=120, check=False, env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})
    assert shown.returncode == 0, shown.stderr
    assert "reconciler - Declarative reconciler for Xen hosts" in _plain(shown.stdout)


def test_help_text_cannot_break_the_roff(tmp_path: Path) -> None:
    """Help is text, never requests: a leading dot, backslashes, quotes, a newline and
    non-ASCII come out as written, and groff says nothing."""
    tricky = ".TH oops\n\\fB not bold 'quoted' \"dq\" `tick` caf\u00e9 \u2014 --flag"
    parser = argparse.ArgumentParser(prog="reconciler", description="Tricky.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.add_parser("odd", help=tricky, description=tricky).add_argument("--opt", help=tricky)
    page = tmp_path / "odd.1"
    page.write_text(render_manpage(parser))
    rendered = groff(page)
    assert rendered.returncode == 0 and rendered.stderr == ""
    text = " ".join(_plain(rendered.stdout).split())
    assert ".TH oops \\fB not bold 'quoted' \"dq\" `tick` caf\u00e9 \u2014 --flag" in text
    assert esc(".x") == "\\&.x" and esc("a\\b") == "a\\eb"
