"""`apply` progress through the real CLI: `[n/N]` on each step line everywhere; the live
counter only on a terminal (a pseudo-terminal here), never in pipes or CI logs."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.obs.conftest import REPO, Run, environment

NUMBERED = re.compile(r"^\[(\d+)/(\d+)\] (\S+): (done|failed|skipped|not started)", re.M)
STAGE = re.compile(r"^\s+\d+\. (.+)$", re.M)  # "  2. disk/web-xvda/attach, vm/web/record"


def planned(out: str) -> list[str]:
    return [sid for stage in STAGE.findall(out) for sid in stage.split(", ")]


def test_step_lines_are_numbered_and_nothing_is_redrawn_in_a_pipe(reconciler: Run, manifests: Path,
                                                                   state: Path) -> None:
    done = reconciler("apply", str(manifests), "--host", f"sim:{state}")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = planned(done.stdout)
    lines = NUMBERED.findall(done.stdout)
    assert [int(n) for n, *_ in lines] == list(range(1, len(steps) + 1))  # n: steps ended so far
    assert {int(total) for _, total, *_ in lines} == {len(steps)}  # N: steps in the plan
    assert sorted(sid for _, _, sid, _ in lines) == sorted(steps)
    assert "\r" not in done.stdout + done.stderr and "\x1b" not in done.stdout + done.stderr


def run_on_pty(argv: list[str], term: str) -> tuple[int, str]:
    """`reconciler ARGV` with stdout and stderr on a pseudo-terminal -> (exit code, what it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", *argv], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**environment(), "TERM": term})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as exc:  # EIO: every slave end closed (the process exited)
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode()


def test_live_counter_on_a_terminal_is_rewritten_in_place_and_erased(manifests: Path, state: Path) -> None:
    code, shown = run_on_pty(["apply", str(manifests), "--host", f"sim:{state}"], "xterm")
    assert code == 0, shown
    counters = re.findall(r"\r\x1b\[K(\[\d+/\d+\] \d+ done, \d+ failed, \d+ running, \d+ left)", shown)
    assert counters, shown
    total = len(planned(shown.replace("\r\n", "\n")))
    assert counters[0].startswith(f"[0/{total}] 0 done, 0 failed")  # drawn before the first step ends
    for n in range(1, total + 1):  # each step line is printed over an erased counter line
        assert re.search(rf"\r\x1b\[K\[{n}/{total}\] \S+: done \(", shown), (n, shown)
    after_last = shown[shown.rindex(" left") + len(" left"):]
    assert after_last.startswith("\r\x1b[K\r\n"), repr(after_last)  # erased at the end, before the report
    assert "Apply complete: " in after_last


def test_no_live_counter_for_a_dumb_terminal(manifests: Path, state: Path) -> None:
    code, shown = run_on_pty(["apply", str(manifests), "--host", f"sim:{state}"], "dumb")
    assert code == 0, shown
    assert "\x1b" not in shown and "running," not in shown and re.search(r"^\[1/\d+\] ", shown, re.M)


def test_counter_counts_the_steps_tasks_running() -> None:
    import asyncio

    from reconciler.cli.progress import Progress

    async def body() -> str:
        progress = Progress(["vm/a/create", "vm/b/create", "vm/c/create"], live=False)
        gate = asyncio.Event()
        tasks = [asyncio.create_task(gate.wait(), name=sid) for sid in ("vm/a/create", "vm/b/create", "other")]
        await asyncio.sleep(0)
        text = progress.counter()
        gate.set()
        await asyncio.gather(*tasks)
        return text

    assert asyncio.run(body()) == "[0/3] 0 done, 0 failed, 2 running, 1 left"


def test_a_log_line_starts_on_an_erased_counter_line(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import logging

    from reconciler import logs
    from reconciler.cli.progress import ERASE, Progress

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    async def body() -> None:
        progress = Progress(["vm/a/create"], live=True)
        async with progress.shown():
            await asyncio.sleep(0)  # the ticker draws the counter
            logging.getLogger("drivers.x").warning("attached")

    try:
        logs.setup(0)
        asyncio.run(body())
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    err = capsys.readouterr().err
    assert f"0 running, 1 left{ERASE}WARNING drivers.x: attached\n" in err, repr(err)
    assert err.endswith("attached\n")  # erased by the log line, not drawn again before the end
