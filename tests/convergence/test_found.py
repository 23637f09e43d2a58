"""Defects the generated sets found, each reduced to a minimal reproduction through the
CLI on the embedded simulated host (the property tests keep covering the general case)."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from reconciler.cli.main import main


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()

ANY_AND_DOM0 = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  v4vRules: ["0:22 -> *:22"]
"""


def test_rule_mixing_any_domain_and_dom0_applies_and_converges(tmp_path: Path) -> None:
    """`0:22 -> *:22` resolves to `--dom-in 0 ...` and its inverse `--dom-out 0 ...`:
    entries with and without a domid. Sorting them compared None with int, so fw-apply
    failed with a TypeError traceback (FirewallEntry ordered as a plain dataclass)."""
    manifests = tmp_path / "web.yaml"
    manifests.write_text(ANY_AND_DOM0)
    state = tempfile.mkdtemp(prefix="found-")
    try:
        host = f"sim:{state}"
        code, out, err = _cli("apply", str(manifests), "--host", host)
        assert code == 0 and "Traceback" not in err, out + err
        assert "v4v/web-firewall/fw-start: done" in out
        code, out, err = _cli("plan", str(manifests), "--host", host, "--detailed-exitcode")
        assert (code, "No changes." in out) == (0, True), out + err
    finally:
        shutil.rmtree(state, ignore_errors=True)
