"""Terminal conventions through the real CLI in processes of its own: `--color
auto|always|never`, NO_COLOR (no-color.org: only a non-empty value disables colour, a
command-line flag overrides it) and TERM=dumb, for `plan` and `apply`; stdout a real
pseudo-terminal or a pipe. Machine formats (json) are never coloured."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.obs.conftest import REPO, environment

DUMP = "tests/data/xenstore-dumps/xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour (Select Graphic Rendition); the live counter's \x1b[K is not one


def run(argv: list[str], env: dict[str, str], *, terminal: bool) -> tuple[int, str]:
    """`reconciler ARGV` with stdout (and stderr) a pseudo-terminal, or pipes -> (exit code, stdout)."""
    base = {k: v for k, v in environment().items() if k not in ("NO_COLOR", "TERM")}
    command = [sys.executable, "-m", "reconciler", *argv]
    if not terminal:
        done = subprocess.run(command, cwd=REPO, env={**base, **env}, capture_output=True, text=True,
                              timeout=120, check=False)
        return done.returncode, done.stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env={**base, **env})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:  # EIO: every follower end closed (the process exited)
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode()


@pytest.mark.parametrize(("flag", "env", "terminal", "coloured"), [
    ([], {"TERM": "xterm"}, True, True),
    ([], {"TERM": "xterm", "NO_COLOR": ""}, True, True),     # empty: not set, per no-color.org
    ([], {"TERM": "xterm", "NO_COLOR": "1"}, True, False),
    ([], {"TERM": "dumb"}, True, False),
    ([], {"TERM": "xterm"}, False, False),                   # auto: a pipe is not a terminal
    (["--color", "auto"], {"TERM": "xterm"}, True, True),
    (["--color", "never"], {"TERM": "xterm"}, True, False),
    (["--color", "always"], {"TERM": "xterm"}, False, True),  # even piped
    (["--color", "always"], {"TERM": "dumb", "NO_COLOR": "1"}, True, True),  # the flag overrides both
])
def test_plan_colour_follows_the_flag_then_no_color_and_term(flag: list[str], env: dict[str, str], terminal: bool,
                                                             coloured: bool) -> None:
    code, out = run(["plan", "manifests", "--observed", DUMP, *flag], env, terminal=terminal)
    assert code == 0, out
    assert "Plan: 3 to create" in SGR.sub("", out)
    assert bool(SGR.search(out)) is coloured, out


def test_machine_formats_and_files_are_never_coloured_unless_asked(tmp_path: Path) -> None:
    code, out = run(["plan", "manifests", "--observed", DUMP, "--format", "json", "--color", "always"], {}, terminal=True)
    assert code == 0 and "\"observed_fingerprint\"" in out and "\x1b" not in out  # stdout and stderr: the terminal
    target = tmp_path / "plan.txt"
    code, _ = run(["plan", "manifests", "--observed", DUMP, "--out", str(target)], {"TERM": "xterm"}, terminal=True)
    assert code == 0 and "\x1b" not in target.read_text()  # auto: a file is not a terminal
    code, _ = run(["plan", "manifests", "--observed", DUMP, "--out", str(target), "--color", "always"], {},
                  terminal=False)
    assert code == 0 and SGR.search(target.read_text())


def test_an_unknown_color_is_one_line_naming_the_choices() -> None:
    code, out = run(["plan", "manifests", "--observed", DUMP, "--color", "sometimes"], {}, terminal=False)
    done = subprocess.run([sys.executable, "-m", "reconciler", "apply", "manifests", "--color", "sometimes"], cwd=REPO,
                          env=environment(), capture_output=True, text=True, timeout=120, check=False)
    assert (code, out) == (1, "") and done.returncode == 1
    assert done.stderr.count("\n") == 1 and "'auto', 'always', 'never'" in done.stderr


@pytest.mark.parametrize(("flag", "terminal", "coloured"), [
    ([], True, True), (["--color", "never"], True, False), ([], False, False), (["--color", "always"], False, True),
])
def test_apply_colours_its_plan_and_its_outcome_line_as_plan_does(manifests: Path, state: Path, flag: list[str],
                                                                   terminal: bool, coloured: bool) -> None:
    code, out = run(["apply", str(manifests), "--host", f"sim:{state}", *flag], {"TERM": "xterm"}, terminal=terminal)
    assert code == 0, out
    plain = SGR.sub("", out)
    assert "Plan: 3 to create" in plain and "\nApply complete: 3 created, 0 failed (" in plain.replace("\r\n", "\n")
    assert bool(SGR.search(out)) is coloured, out
    if coloured:
        assert "\x1b[1;32mApply complete: " in out
