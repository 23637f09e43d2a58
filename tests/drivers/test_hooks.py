"""`drivers.hooks.LocalHooks`, the hook runner of every host: real processes from
shell scripts written into tmp_path (the runner itself never uses a shell)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from drivers.hooks import LocalHooks
from reconciler.errors import TerminalHostError
from reconciler.ports import HookResult


def _hook(tmp_path: Path, body: str, name: str = "hook") -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _gone(pid: int) -> bool:
    """Ended (a zombie no one reaped counts), waiting up to 10 s for a SIGKILL to land."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_argv_is_passed_as_is_without_a_shell(tmp_path: Path) -> None:
    hook = _hook(tmp_path, 'printf "%s|" "$@"; echo "on stderr" >&2; exit 7')
    result = asyncio.run(LocalHooks().run([hook, "a b", "$HOME;`id`"], timeout=10))
    assert result == HookResult(7, "a b|$HOME;`id`|", "on stderr\n")


def test_a_hook_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    hook = _hook(tmp_path, f"trap '' TERM; echo $$ > {tmp_path}/pid; echo started; sleep 600 & wait; wait")
    result = asyncio.run(LocalHooks(grace_s=0.2).run([hook], timeout=3))
    assert (result.status, result.stdout) == (-signal.SIGKILL, "started\n")
    assert _gone(int((tmp_path / "pid").read_text()))


def test_output_keeps_the_last_bytes_of_each_stream(tmp_path: Path) -> None:
    hook = _hook(tmp_path, "head -c 5000 /dev/zero | tr '\\0' a; echo END")
    result = asyncio.run(LocalHooks(output_max=100).run([hook], timeout=10))
    assert result.stdout == "[4904 bytes dropped]\n" + "a" * 96 + "END\n"


@pytest.mark.parametrize("mode", [0o644, None])
def test_a_hook_that_cannot_start_is_one_line_naming_it(tmp_path: Path, mode: int | None) -> None:
    path = tmp_path / "hook"
    if mode is not None:
        path.write_text("#!/bin/sh\n")
        path.chmod(mode)
    with pytest.raises(TerminalHostError) as caught:
        asyncio.run(LocalHooks().run([str(path), "uuid"], timeout=10))
    assert str(caught.value).startswith(f"cannot run hook {path}: ")
    assert "\n" not in str(caught.value)


def test_a_cancelled_run_kills_the_hook(tmp_path: Path) -> None:
    hook = _hook(tmp_path, f"echo $$ > {tmp_path}/pid; exec sleep 600")

    async def cancel_it() -> None:
        task = asyncio.ensure_future(LocalHooks().run([hook], timeout=600))
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert _gone(int((tmp_path / "pid").read_text()))
    assert os.getpgrp() != int((tmp_path / "pid").read_text())  # it had a process group of its own
