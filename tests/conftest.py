"""Shared fixtures. What is real: files, YAML, the CLI entry point, subprocesses, the
simulated xenstored on real Unix sockets and Xen's own tools. What is faked: nothing in
this folder; the hypervisor, `xl` and sysfs are simulated by `drivers.sim` (see the
conftest of each test folder for what that folder fakes)."""

from __future__ import annotations

from pathlib import Path

import shutil
import tempfile
from collections.abc import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the repository as working directory, so reported paths are short and stable."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture
def sim_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, short state directory for the simulated host (Unix socket paths are
    limited to 107 bytes), with every simulated delay 50x shorter."""
    monkeypatch.setenv("RECONCILER_SIM_DELAY_SCALE", "0.02")
    path = Path(tempfile.mkdtemp(prefix="sim-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


EXAMPLE_HOOKS = "/usr/libexec/xen-hooks/"  # where the examples' hooks live on an OpenXT dom0, not here


def with_runnable_hooks(example: str | Path, dest: Path, hook_dir: Path | None = None) -> Path:
    """A copy of the manifest folder `example` in `dest` whose hooks can run on this machine
    (hooks run for real on every host, and this one has no /usr/libexec/xen-hooks): each
    runs `/bin/true`, or with `hook_dir` a script there of the same name that appends
    `NAME ARGS...` to `hook_dir/calls.log`. Returns the copy's path."""
    source = REPO / example if not Path(example).is_absolute() else Path(example)
    shutil.copytree(source, dest)
    for path in sorted(dest.rglob("*.yaml")):
        text = path.read_text()
        if EXAMPLE_HOOKS not in text:
            continue
        for name in sorted({line.split(EXAMPLE_HOOKS, 1)[1].strip() for line in text.splitlines() if EXAMPLE_HOOKS in line}):
            target = "/bin/true"
            if hook_dir is not None:
                script = hook_dir / name
                script.write_text(f'#!/bin/sh\necho "{name} $*" >> {hook_dir}/calls.log\n')
                script.chmod(0o755)
                target = str(script)
            text = text.replace(EXAMPLE_HOOKS + name, target)
        path.write_text(text)
    return dest
