"""The wheel as pip builds it: the license travels with it (issue 15: no LICENSE in the
repository or the wheel, and setuptools warned that the `license` table is deprecated),
and so do the man page and the completion scripts, installed where man and bash look."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel pip builds from the repository, and pip's output while building it."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-w", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = out.glob("xen_reconciler-*.whl")
    return path, built.stdout + built.stderr


def test_the_wheel_carries_the_license_and_an_spdx_expression(wheel: tuple[Path, str]) -> None:
    path, output = wheel
    assert "deprecated" not in output.lower()
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        license_text = archive.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert license_text == (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")


def test_the_wheel_installs_the_man_page_and_completions(wheel: tuple[Path, str], tmp_path: Path) -> None:
    """pip install --prefix, then `man` finds the page on MANPATH and bash completes with
    the installed script: the same files as the checked-in ones."""
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first uninstalls the project from the venv running
    # the tests (its --prefix does not stop that), and every later test lost `reconciler`.
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--no-index",
                                "--ignore-installed", "--disable-pip-version-check", "--prefix", str(prefix), str(wheel[0])],
                               capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert "uninstall" not in installed.stdout.lower(), installed.stdout  # the venv's own install is left alone
    share = prefix / "share"
    for shipped, source in (("man/man1/reconciler.1", "man/reconciler.1"),
                            ("bash-completion/completions/reconciler", "completions/reconciler"),
                            ("zsh/site-functions/_reconciler", "completions/_reconciler")):
        assert (share / shipped).read_text() == (REPO / source).read_text(), shipped
    shown = subprocess.run(["man", "-P", "cat", "reconciler"], capture_output=True, text=True, timeout=120,
                           check=False, env={**os.environ, "MANPATH": str(share / "man"), "MANWIDTH": "80"})
    assert shown.returncode == 0, shown.stderr
    assert "EXIT STATUS" in re.sub(".\b", "", shown.stdout)  # bold as overstrike, if man keeps it
    completed = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c",
         'source "$1"; COMP_WORDS=(reconciler val); COMP_CWORD=1; _shtab_reconciler; echo "${COMPREPLY[*]}"',
         "bash", str(share / "bash-completion/completions/reconciler")],
        capture_output=True, text=True, timeout=60, check=False)
    assert completed.stdout == "validate\n", completed.stderr
