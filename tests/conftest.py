"""Shared fixtures. What is real: files, YAML, the CLI entry point, subprocesses, the
simulated xenstored on real Unix sockets and Xen's own tools. What is faked: nothing in
this folder; the hypervisor, `xl` and sysfs are simulated by `drivers.sim` (see the
conftest of each test folder for what that folder fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the repository as working directory, so reported paths are short and stable."""
    monkeypatch.chdir(REPO)
    return REPO
