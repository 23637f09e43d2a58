"""Fixtures for the convergence proof (issue 10, "Proof"): generated manifest sets
(`manifests.py`) applied to a simulated host, then checked with `plan`.

Real: the CLI in processes of its own (`reconciler apply|plan|observe|sim ...`), the
simulated host served by `reconciler sim serve` (xenstored and host RPC on Unix
sockets), Xen's own `xenstore-write`/`xenstore-rm` against that xenstored, SIGKILL.
The fixed-point test runs the CLI entry point in this process on the embedded host
(the same code, without a process per call, so it can try more sets). Faked: nothing;
the simulated guests write their bootSentinel themselves. Delays run 50x faster, retries
never sleep, a sentinel times out after 5 s (environment, below).

How long: the default profile (derandomized: every run tries the same sets) keeps the
folder under ~2 minutes. For a soak, raise the number of examples of every test here and
let hypothesis pick fresh sets on each run:

    RECONCILER_SOAK_EXAMPLES=500 .venv/bin/pytest tests/convergence -m "not xfail"

`RECONCILER_SOAK_EXAMPLES=N` switches to the `soak` profile: N examples per test, not
derandomized. A failure prints the set's YAML (hypothesis `note`), to replay by hand with
`reconciler apply FILE --host sim:DIR`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.convergence.checks import problems
from tests.convergence.manifests import ManifestSet

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "RECONCILER_SIM_DELAY_SCALE": "0.02",
    "RECONCILER_RETRY_BACKOFF_S": "0",
    "RECONCILER_SENTINEL_TIMEOUT_S": "5",
    "RECONCILER_SHUTDOWN_TIMEOUT_S": "2",
    "PYTHONUNBUFFERED": "1",
}
SOAK = int(os.environ.get("RECONCILER_SOAK_EXAMPLES", "0"))

settings.register_profile("convergence", deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("soak", parent=settings.get_profile("convergence"), derandomize=False,
                          max_examples=max(SOAK, 1))


def examples(default: int, *, shrink: bool = True) -> settings:
    """Settings for one test: `default` examples, or the soak's count. `shrink=False`
    for tests expected to fail (xfail): they stop at the first failing example."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(settings.get_profile("soak" if SOAK else "convergence"),
                    max_examples=SOAK or default, phases=phases)


@pytest.fixture(scope="session", autouse=True)
def convergence_env() -> Iterator[None]:
    """The environment of every CLI call here, in-process or not (session-wide, since
    hypothesis tests must not share function-scoped fixtures across examples)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        for key in ("RECONCILER_HOST", "RECONCILER_PARALLELISM"):
            patch.delenv(key, raising=False)
        yield


def short_dir(prefix: str) -> Path:
    """A short directory (Unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def reconciler(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`reconciler ARGV...` in a process of its own, from the repository root."""
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=REPO, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=timeout, check=False)


class Served:
    """`reconciler sim serve --state DIR` in its own process, and what the tests do to it.
    With `serve=False` nothing is served: every process embeds the host of DIR in turn
    (what a power loss during `apply` on the embedded host loses is then on disk)."""

    def __init__(self, state: Path, serve: bool = True) -> None:
        self.state = state
        self.proc: subprocess.Popen[str] | None = None
        if not serve:
            return
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)],
                                     cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline() for _ in range(3)]  # printed once both sockets listen
        assert lines[-1].startswith("export XENSTORED_PATH="), lines

    @property
    def host(self) -> str:
        return f"sim:{self.state}"

    def sim(self, *argv: str) -> str:
        done = reconciler("sim", *argv, "--state", str(self.state))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def xs(self, *argv: str) -> str:
        """Xen's own xenstore client (`xenstore-write`, `-rm`, `-read`) on the served store."""
        env = {**os.environ, "XENSTORED_PATH": str(self.state / "xenstored.sock")}
        done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done.stdout

    def observe(self) -> dict[str, Any]:
        import json

        done = reconciler("observe", "--host", self.host, "--format", "json")
        assert done.returncode == 0, done.stderr
        observed: dict[str, Any] = json.loads(done.stdout)
        return observed

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


class Site:
    """One generated manifest set on disk, and a served host to apply it to."""

    def __init__(self, text: str, serve: bool = True) -> None:
        self.folder = short_dir("cv-m-")
        self.manifests = self.folder / "set.yaml"
        self.manifests.write_text(text)
        self.served = Served(short_dir("cv-"), serve)

    def apply(self) -> subprocess.CompletedProcess[str]:
        return reconciler("apply", str(self.manifests), "--host", self.served.host)

    def plan(self) -> subprocess.CompletedProcess[str]:
        return reconciler("plan", str(self.manifests), "--host", self.served.host, "--detailed-exitcode")

    def apply_converges(self, mset: ManifestSet) -> None:
        """apply exits 0, then plan says "No changes", and the host holds nothing leaked."""
        after = self.apply()
        assert after.returncode == 0, after.stdout + after.stderr
        plan = self.plan()
        assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
        found = problems(mset, self.served.observe(), self.served.sim("list"))
        assert found == [], found

    def close(self) -> None:
        self.served.stop()
        shutil.rmtree(self.served.state, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)
