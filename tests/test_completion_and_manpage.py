"""Shell completion, as a user meets it (issue 15's packaging point): the real CLI prints
the script, real `bash` sources it and completes with it; the checked-in copies
(completions/) match the parser, like `reconciler schema --check`. Every option has a
help text (`--help` prints it). Nothing is faked."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import plan
from reconciler.cli.main import build_parser

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
