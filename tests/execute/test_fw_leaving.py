"""A kept VM's rule is resolved in the same apply that rebuilds a VM it names: its
entries must name the new domain only. The `fw-apply` of the kept rule runs while the
old domain is still up (it waits for nothing); resolving against that domain inserted
entries the destroy never removes, so the next plan found them stale (test_crash's
SIGKILL at a random step hit it once a build-time stub domain could be lost)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.model.host import FirewallEntry

MANIFESTS = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: net}
spec:
  virt: pv
  memory: 64
  kernel: /boot/vmlinuz
  type: ndvm
  v4vRules:
  - {rule: "* -> dom-type=svm:80", bidirectional: true}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: app}
spec:
  virt: pv
  memory: 64
  kernel: /boot/vmlinuz
  type: svm
  updatePolicy: restart
"""


def _domains(host: Any) -> dict[str, int]:
    return {d.name: d.domid for d in host.run(lambda ports: ports.toolstack.list_domains())}


def _table(host: Any) -> list[FirewallEntry]:
    return list(host.run(lambda ports: ports.firewall.list()))


def test_a_kept_rule_applied_while_a_vm_it_names_is_rebuilt_names_only_the_new_domain(
        served: Callable[..., Any], cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    (tmp_path / "host.yaml").write_text(MANIFESTS)
    host = served()
    code, out, err = cli("apply", str(tmp_path))
    assert (code, err) == (0, ""), out
    old = _domains(host)["app"]
    served_entries = [e for e in _table(host) if old in (e.dom_in, e.dom_out)]
    assert served_entries, _table(host)
    host.run(lambda ports: ports.firewall.delete(served_entries[0]))  # drift: net's rule needs fw-apply
    # A restart-only change: the running domain is replaced in the same apply.
    (tmp_path / "host.yaml").write_text(MANIFESTS.replace("type: svm\n", "type: svm\n  cmdline: quiet\n"))
    code, out, _ = cli("plan", str(tmp_path))
    assert "fw-apply" in out and "vm/app/destroy" in out, out
    code, out, err = cli("apply", str(tmp_path))
    assert (code, err) == (0, ""), out
    new = _domains(host)["app"]
    assert new != old
    left = [e for e in _table(host) if old in (e.dom_in, e.dom_out)]
    assert left == [], f"entries name the destroyed domain {old}: {left}"
    assert any(new in (e.dom_in, e.dom_out) for e in _table(host)), _table(host)
    code, out, _ = cli("plan", str(tmp_path), "--detailed-exitcode")
    assert code == 0 and "No changes. The host matches the manifests." in out, out
