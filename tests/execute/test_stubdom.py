"""Stub domains on the simulated host: an HVM VM with `stubdom.enabled` is built with its
`<vm>-dm` device-model domain (as libxl builds it), its `my-stubdom` v4v rules resolve to
that domain in the apply that starts the VM, and the stub domain goes with the guest
(stopped by the manifests, or powered off / crashed on its own)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.sim.client import SimToolstack
from reconciler.model.host import FirewallEntry
from tests.conftest import with_runnable_hooks

SOURCE = "examples/openxt-desktop"  # its hooks are under /usr/libexec/xen-hooks: copied runnable
PORTS = (4001, 4002, 5000, 5001, 5555)  # win10's five `my-stubdom -> 0:PORT` rules


def _domains(host: Any) -> dict[str, int]:
    return {d.name: d.domid for d in host.run(lambda ports: ports.toolstack.list_domains())}


def _table(host: Any) -> list[FirewallEntry]:
    return list(host.run(lambda ports: ports.firewall.list()))


def _read(host: Any, path: str) -> str:
    return bytes(host.run(lambda ports: ports.xenstore.read(path))).decode()


def _stub_entries(stub: int) -> set[FirewallEntry]:
    """What xenmgr inserts for `my-stubdom -> 0:PORT` (bidirectional: the reply way too)."""
    out = set()
    for port in PORTS:
        out.add(FirewallEntry(dom_in=stub, dom_out=0, port_out=port))
        out.add(FirewallEntry(dom_in=0, dom_out=stub, port_in=port))
    return out


def test_my_stubdom_entries_go_in_with_the_start_and_leave_with_the_stop(
        served: Callable[..., Any], cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    example = str(with_runnable_hooks(SOURCE, tmp_path / "example"))
    host = served()
    code, out, err = cli("apply", example)
    assert (code, err) == (0, ""), out
    domains = _domains(host)
    guest, stub = domains["win10"], domains["win10-dm"]
    assert "work-linux-dm" not in domains and "ndvm-dm" not in domains  # PV/no stubdom: none
    # As libxl writes them: the guest names its device model's domain, the stub its target.
    assert _read(host, f"/local/domain/{guest}/image/device-model-domid") == str(stub)
    assert _read(host, f"/local/domain/{stub}/target") == str(guest)
    assert _read(host, f"/local/domain/{stub}/name") == "win10-dm"
    # In the same apply: every my-stubdom entry, with the stub domain's domid.
    table = _table(host)
    assert _stub_entries(stub) <= set(table), table
    assert table[-1] == FirewallEntry(target="REJECT")
    code, out, _ = cli("plan", example, "--detailed-exitcode")
    assert code == 0 and "No changes. The host matches the manifests." in out, out

    # Stop win10: its stub domain goes with it, and every entry naming the stub domain.
    manifests = tmp_path / "desktop"
    shutil.copytree(example, manifests)
    vm = manifests / "user-vms" / "win10.yaml"
    vm.write_text(vm.read_text().replace("  virt: hvm\n", "  virt: hvm\n  state: stopped\n", 1))
    code, out, err = cli("apply", str(manifests))
    assert (code, err) == (0, ""), out
    domains = _domains(host)
    assert "win10" not in domains and "win10-dm" not in domains, domains
    table = _table(host)
    assert not [e for e in table if stub in (e.dom_in, e.dom_out)], table
    code, out, _ = cli("plan", str(manifests), "--detailed-exitcode")
    assert code == 0 and "No changes. The host matches the manifests." in out, out


def test_a_guest_that_powers_off_or_crashes_takes_its_stub_domain(
        served: Callable[..., Any], cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    example = str(with_runnable_hooks(SOURCE, tmp_path / "example"))
    host = served()
    code, out, err = cli("apply", example)
    assert (code, err) == (0, ""), out
    guest, stub = _domains(host)["win10"], _domains(host)["win10-dm"]
    host.run(lambda ports: ports.toolstack.shutdown(guest, timeout=10))  # the guest acks and powers off
    domains = _domains(host)
    assert "win10" not in domains and "win10-dm" not in domains, domains
    assert host.run(lambda ports: ports.xenstore.snapshot(f"/local/domain/{stub}")) == {}
    assert host.run(lambda ports: ports.xenstore.snapshot(f"/local/domain/0/device-model/{guest}")) == {}

    code, out, err = cli("apply", example)  # built again, with a new stub domain
    assert (code, err) == (0, ""), out
    domains = _domains(host)
    guest, stub = domains["win10"], domains["win10-dm"]
    assert _stub_entries(stub) <= set(_table(host))
    toolstack = host.ports.toolstack
    assert isinstance(toolstack, SimToolstack)
    host.run(lambda ports: toolstack.crash(guest))  # onCrash destroy (the default): xl destroys it
    domains = _domains(host)
    assert "win10" not in domains and "win10-dm" not in domains, domains


DESKTOP = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: desk}
spec:
  virt: hvm
  memory: 512
  stubdom: {enabled: true, memory: 32Mi}
  lifecycle: {onCrash: rename-restart}
  v4vRules: ["my-stubdom -> 0:4001"]
"""


def test_rename_restart_renames_the_stub_domain_and_the_guest_is_built_again(
        served: Callable[..., Any], cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    (tmp_path / "desk.yaml").write_text(DESKTOP)
    host = served()
    code, out, err = cli("apply", str(tmp_path))
    assert (code, err) == (0, ""), out
    guest, stub = _domains(host)["desk"], _domains(host)["desk-dm"]
    toolstack = host.ports.toolstack
    assert isinstance(toolstack, SimToolstack)
    host.run(lambda ports: toolstack.crash(guest))  # xl keeps it as desk-<time>, its stub as desk-<time>-dm
    by_domid = {domid: name for name, domid in _domains(host).items()}
    assert by_domid[stub] == f"{by_domid[guest]}-dm" and by_domid[guest].startswith("desk-"), by_domid
    assert _read(host, f"/local/domain/{stub}/name") == by_domid[stub]
    code, out, err = cli("apply", str(tmp_path))  # desk-dm is free again: desk is built with a new one
    assert (code, err) == (0, ""), out
    new = _domains(host)["desk-dm"]
    assert new not in (guest, stub)
    table = set(_table(host))
    assert {FirewallEntry(dom_in=new, dom_out=0, port_out=4001),
            FirewallEntry(dom_in=0, dom_out=new, port_in=4001)} <= table
    code, out, _ = cli("plan", str(tmp_path), "--detailed-exitcode")
    assert code == 0 and "No changes. The host matches the manifests." in out, out


def test_a_guest_whose_stub_domain_is_gone_is_rebuilt_with_a_new_one(
        served: Callable[..., Any], cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    # QEMU of a stubdom guest runs in `<vm>-dm`, which libxl builds only with the guest: a
    # stub domain destroyed by hand (or a build killed between the guest and its stub
    # domain) leaves a guest nothing can repair in place. The plan says so and rebuilds it.
    (tmp_path / "desk.yaml").write_text(DESKTOP.replace("onCrash: rename-restart", "onCrash: destroy"))
    host = served()
    code, out, err = cli("apply", str(tmp_path))
    assert (code, err) == (0, ""), out
    guest, stub = _domains(host)["desk"], _domains(host)["desk-dm"]
    host.run(lambda ports: ports.toolstack.destroy(stub))
    assert "desk-dm" not in _domains(host)
    code, out, _ = cli("plan", str(tmp_path), "--detailed-exitcode")
    assert code == 2, out
    assert "-/+ VM desk [restart]: it was built with a device-model stub domain and desk-dm is gone" in out, out
    code, out, err = cli("apply", str(tmp_path))
    assert (code, err) == (0, ""), out
    domains = _domains(host)
    assert domains["desk"] != guest and domains["desk-dm"] not in (guest, stub), domains
    assert {FirewallEntry(dom_in=domains["desk-dm"], dom_out=0, port_out=4001)} <= set(_table(host))
    code, out, _ = cli("plan", str(tmp_path), "--detailed-exitcode")
    assert code == 0 and "No changes. The host matches the manifests." in out, out
