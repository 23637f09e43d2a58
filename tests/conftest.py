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
