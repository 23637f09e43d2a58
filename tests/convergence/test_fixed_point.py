"""Fixed point (DESIGN 7, idempotence): for any valid manifest set, `apply` on the
embedded simulated host, then `plan --detailed-exitcode` exits 0 "No changes", and the
host holds each live VM once, managed, with an ordered firewall table free of
duplicates and exactly the devices the rules need on pciback.

Runs the CLI entry point in this process (embedded host, no `serve`), so it can try
more sets than the process-based tests beside it.

Longer (a soak): `RECONCILER_SOAK_EXAMPLES=500 .venv/bin/pytest tests/convergence -m "not xfail"`
(conftest.py says more).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
from hypothesis import given, note

from reconciler.cli.main import main
from tests.convergence.checks import problems
from tests.convergence.conftest import examples, short_dir
from tests.convergence.manifests import ManifestSet, manifest_sets


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_fixed_point(mset: ManifestSet) -> None:
    note(mset.yaml())
    folder, state = short_dir("fp-m-"), short_dir("fp-")
    try:
        manifests = folder / "set.yaml"
        manifests.write_text(mset.yaml())
        host = f"sim:{state}"
        code, out, err = _cli("validate", str(manifests))
        assert code == 0, out + err
        code, out, err = _cli("apply", str(manifests), "--host", host)
        assert code == 0, out + err
        code, out, err = _cli("plan", str(manifests), "--host", host, "--detailed-exitcode")
        assert (code, "No changes." in out) == (0, True), out + err
        _, observed, _ = _cli("observe", "--host", host, "--format", "json")
        assert problems(mset, json.loads(observed)) == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


@examples(50)
@given(manifest_sets())
def test_apply_then_plan_has_no_changes(mset: ManifestSet) -> None:
    check_fixed_point(mset)

