"""Crash at a random step (DESIGN 7: "after any interruption of apply ... the next plan
shows what is left, and apply finishes it without duplicating a domain, a device or a
firewall entry"): a real `reconciler apply` process is SIGKILLed at a drawn point (once
a drawn share of its planned steps reported an outcome, or right after the first
`vm/<name>/create: done`, the window between a domain's create and its record), either
against a host served by `reconciler sim serve` or on the embedded host it owns (a power
loss: only what it saved survives); then `apply` exits 0, `plan --detailed-exitcode`
exits 0, and the host holds each live VM once and managed, no duplicate firewall entry,
no device on pciback that no rule needs.

Longer (a soak): `RECONCILER_SOAK_EXAMPLES=500 .venv/bin/pytest tests/convergence -m "not xfail"`
(conftest.py says more).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from tests.convergence.conftest import ENV, REPO, Site, examples
from tests.convergence.manifests import ManifestSet, manifest_sets

STAGE = re.compile(r"^\s+\d+\. (.+)$")  # "  3. disk/a/attach, vm/a/record" in the printed plan
STEP_DONE = re.compile(r"^\[\d+/\d+\] \S+: (done|failed|skipped)\b")  # "[1/9] vm/a/create: done (0.00 s)"


AFTER_CREATE = -1.0  # a kill point: right after the first "vm/<name>/create: done"
CREATE_DONE = re.compile(r"^\[\d+/\d+\] vm/[^/]+/create: done\b")


def kill_apply(site: Site, share: float) -> tuple[int, int, list[str]]:
    """Start `reconciler apply`, SIGKILL it once `share` of its planned steps reported an
    outcome (0: as soon as its plan is printed; AFTER_CREATE: see there).
    -> (steps planned, steps seen, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", str(site.manifests), "--host", site.served.host],
                            cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    planned = seen = 0
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            stage = STAGE.match(line)
            if stage:
                planned += len(stage.group(1).split(", "))
            elif STEP_DONE.match(line):
                seen += 1
            if share == AFTER_CREATE:
                if CREATE_DONE.match(line):
                    break
            elif planned and (line.startswith("Plan:") or seen) and seen >= round(share * planned):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    return planned, seen, lines


def check_crash(mset: ManifestSet, share: float, serve: bool) -> None:
    note(mset.yaml())
    site = Site(mset.yaml(), serve)
    try:
        planned, seen, lines = kill_apply(site, share)
        note(f"SIGKILL after {seen} of {planned} steps:\n" + "\n".join(lines[-12:]))
        site.apply_converges(mset)
    finally:
        site.close()


@examples(6)
@given(manifest_sets(max_vms=4), st.sampled_from([AFTER_CREATE, 0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9]),
       st.sampled_from([True, False]))
def test_sigkill_at_a_random_step_then_apply_converges(mset: ManifestSet, share: float, serve: bool) -> None:
    check_crash(mset, share, serve)
