"""Drift from a catalogue (DESIGN 7: what the reconciler manages it owns whole): a
generated set is applied to a host served by `reconciler sim serve`, one drift drawn
from `CATALOGUE` (among those the set allows) is made the way an operator would, with
Xen's own `xenstore-write`/`xenstore-rm` or `reconciler sim fw|pci|destroy` in
processes of their own; then `plan --detailed-exitcode` exits 2 and names the drifted
resource, `apply` exits 0, and `plan` exits 0 "No changes".

Device unplug is what libxl leaves once a device is removed (`xl block-detach`,
`xl network-detach`): its backend, frontend and /libxl nodes gone, removed here with
`xenstore-rm`. A memory target change is `xl mem-set`'s write of `memory/target`.

Longer (a soak): `RECONCILER_SOAK_EXAMPLES=500 .venv/bin/pytest tests/convergence -m "not xfail"`
(conftest.py says more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st

from reconciler.xenfmt import emulated_disk, emulated_nic, vdev_to_devid
from tests.convergence.conftest import Served, Site, examples
from tests.convergence.manifests import ManifestSet, manifest_sets


@dataclass(frozen=True)
class Drift:
    """One drift made on a converged host; `texts` are what plan must name."""

    what: str
    make: Callable[[Served], None]
    texts: tuple[str, ...]


def _domid(observed: dict[str, Any], vm: str) -> int:
    return int(observed["domains"][vm]["domid"])


def _vm_data(mset: ManifestSet, observed: dict[str, Any]) -> list[Drift]:
    out = []
    for vm in mset.live():
        base = f"/local/domain/{_domid(observed, vm)}"
        keys = sorted(mset.vms[vm].get("xenstoreData", {}))
        out.append(Drift(f"xenstore-write {base}/vm-data/extra", lambda s, b=base: s.xs("xenstore-write", f"{b}/vm-data/extra", "x"),
                         ("spec.xenstoreData.vm-data/extra",)))
        for key in keys:
            out.append(Drift(f"xenstore-write {base}/{key} tampered",
                             lambda s, b=base, k=key: s.xs("xenstore-write", f"{b}/{k}", "tampered"),
                             (f"spec.xenstoreData.{key}",)))
            out.append(Drift(f"xenstore-rm {base}/{key}", lambda s, b=base, k=key: s.xs("xenstore-rm", f"{b}/{k}"),
                             (f"spec.xenstoreData.{key}",)))
    return out


def _firewall(mset: ManifestSet, observed: dict[str, Any]) -> list[Drift]:
    table: list[str] = observed["firewall"]
    out = [
        Drift("viptables -I 1 -j ACCEPT", lambda s: s.sim("fw", "--insert", "1", "-j ACCEPT"), ("-j ACCEPT",)),
        Drift("viptables -D -j REJECT", lambda s: s.sim("fw", "--delete", "-j REJECT"), ("-j REJECT",)),
        Drift("viptables -A after the REJECT", lambda s: s.sim("fw", "--append", "--dom-in 7 --dom-out 0 -j ACCEPT"),
              ("--dom-in 7 --dom-out 0 -j ACCEPT",)),
    ]
    for entry in table[:-1]:
        out.append(Drift(f"viptables -I 1 {entry} (a duplicate)", lambda s, e=entry: s.sim("fw", "--insert", "1", e), (entry,)))
    return out


def _backs_a_live_nic(mset: ManifestSet, vm: str) -> bool:
    return any(kind == "NIC" and fields.get("backendVM") == vm and owner in mset.live()
               for kind, owner, fields in mset.devices.values())


def _domains(mset: ManifestSet, observed: dict[str, Any]) -> list[Drift]:
    """Destroying a network backend VM strands its guests' NICs: they are re-plugged (issue 12).
    Removing a domain's xenstore tree leaves a domain the hypervisor lists: rebuilt."""
    out = []
    for vm in mset.live():
        texts = (f"VM {vm}", "re-plugged") if _backs_a_live_nic(mset, vm) else (f"VM {vm}",)
        out.append(Drift(f"xl destroy {vm}", lambda s, v=vm: s.sim("destroy", v), texts))
        tree = f"/local/domain/{_domid(observed, vm)}"  # the hypervisor still lists the domain
        out.append(Drift(f"xenstore-rm {tree}", lambda s, t=tree: s.xs("xenstore-rm", t),
                         (f"VM {vm} [restart]: its xenstore nodes are gone",)))
        target = f"/local/domain/{_domid(observed, vm)}/memory/target"
        out.append(Drift(f"xl mem-set {vm} 32m", lambda s, t=target: s.xs("xenstore-write", t, "32768"),
                         (f"VM {vm}", "spec.memory")))
    return out


def _pciback(mset: ManifestSet, observed: dict[str, Any]) -> list[Drift]:
    """A device a greedy rule holds for a stopped VM, given back to its driver by hand."""
    live = set(mset.live())
    return [Drift(f"xl pci-assignable-remove -r {bdf}", lambda s, b=bdf: s.sim("pci", "--unbind", b), (bdf,))
            for bdf, (vm, greedy) in sorted(mset.pci.items()) if greedy and vm not in live]


def _unplug(mset: ManifestSet, observed: dict[str, Any]) -> list[Drift]:
    out = []
    for name, (kind, vm, fields) in sorted(mset.devices.items()):
        if vm not in mset.live() or kind not in ("Disk", "NIC"):
            continue
        virt = mset.vms[vm]["virt"]
        if (emulated_disk(virt, fields["vdev"], fields.get("devtype")) if kind == "Disk"
                else emulated_nic(virt, fields.get("type"), fields.get("model"))):
            continue  # QEMU's half stays until a restart: plugging it back is no live change (test_live_limits)
        domid = _domid(observed, vm)
        kinds = ("vbd", "vbd") if kind == "Disk" else ("vif", "vif")
        devid = vdev_to_devid(fields["vdev"]) if kind == "Disk" else fields["index"]
        libxl = f"/libxl/{domid}/device/{kinds[0]}/{devid}"

        def unplug(s: Served, libxl: str = libxl, front: str = f"/local/domain/{domid}/device/{kinds[1]}/{devid}") -> None:
            backend = s.xs("xenstore-read", f"{libxl}/backend").strip()
            for path in (backend, front, libxl):
                s.xs("xenstore-rm", path)

        out.append(Drift(f"unplug {kind} {name} (backend, frontend and /libxl nodes removed)", unplug, (f"{kind} {name}",)))
    return out


CATALOGUE = (_vm_data, _firewall, _domains, _pciback, _unplug)


def check_drift(mset: ManifestSet, data: st.DataObject) -> None:
    note(mset.yaml())
    site = Site(mset.yaml())
    try:
        first = site.apply()
        assert first.returncode == 0, first.stdout + first.stderr
        observed = site.served.observe()
        families = [drifts for family in CATALOGUE if (drifts := family(mset, observed))]
        drift = data.draw(st.sampled_from(data.draw(st.sampled_from(families))), label="drift")
        note(f"drift: {drift.what}")
        drift.make(site.served)
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        for text in drift.texts:
            assert text in plan.stdout, plan.stdout
        site.apply_converges(mset)
    finally:
        site.close()


@examples(8)
@given(manifest_sets(max_vms=4), st.data())
def test_drift_is_planned_by_name_and_undone(mset: ManifestSet, data: st.DataObject) -> None:
    check_drift(mset, data)


NDVM_AND_GUEST = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: net}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, type: ndvm, providesNetworkBackend: true, bootSentinel: booted}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: guest}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  nics: [{backendVM: net}]
"""


def test_destroyed_network_backend_vm_is_recreated_and_its_guests_nics_replugged() -> None:
    site = Site(NDVM_AND_GUEST)
    try:
        assert site.apply().returncode == 0
        site.served.sim("destroy", "net")
        plan = site.plan()
        assert plan.returncode == 2 and "VM net" in plan.stdout, plan.stdout + plan.stderr
        assert "NIC guest-nic0 [live]: backend VM net restarted: re-plugged" in plan.stdout, plan.stdout
        again = site.apply()
        assert again.returncode == 0, again.stdout + again.stderr
        plan = site.plan()
        assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
    finally:
        site.close()


def test_restarted_network_backend_vm_gets_its_guests_nics_back() -> None:
    site = Site(NDVM_AND_GUEST)
    try:
        assert site.apply().returncode == 0
        site.manifests.write_text(NDVM_AND_GUEST.replace("memory: 64, type: ndvm", "memory: 128, updatePolicy: restart, type: ndvm"))
        for _ in range(2):  # the restart, then whatever it left
            site.apply()
        plan = site.plan()
        assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
    finally:
        site.close()


DB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: db}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  disks: [{target: /srv/db.img, vdev: xvda}]
  nics: [{}]
"""


def test_domain_whose_xenstore_tree_was_removed_is_rebuilt() -> None:
    """`xenstore-rm /local/domain/<domid>` leaves a domain the hypervisor still lists
    (its /vm and /libxl nodes kept): plan names it as a restart, apply rebuilds it."""
    site = Site(DB)
    try:
        assert site.apply().returncode == 0
        domid = _domid(site.served.observe(), "db")
        site.served.xs("xenstore-rm", f"/local/domain/{domid}")
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert (f"VM db [restart]: its xenstore nodes are gone (domain {domid} is still listed by the hypervisor): "
                "destroyed and built again") in plan.stdout, plan.stdout
        again = site.apply()
        assert again.returncode == 0, again.stdout + again.stderr
        plan = site.plan()
        assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
        listed = [line.split()[0] for line in site.served.sim("list").splitlines()[1:] if line.strip()]
        assert listed.count("db") == 1, listed
    finally:
        site.close()


def test_domain_whose_xenstore_tree_and_marker_were_removed_is_a_conflict() -> None:
    """With /vm/<uuid> removed too, nothing on the host proves the domain is ours: plan
    and apply refuse (exit 1) and name it, and nothing is destroyed."""
    site = Site(DB)
    try:
        assert site.apply().returncode == 0
        observed = site.served.observe()
        domid, uuid = _domid(observed, "db"), observed["domains"]["db"]["uuid"]
        site.served.xs("xenstore-rm", f"/local/domain/{domid}")
        site.served.xs("xenstore-rm", f"/vm/{uuid}")
        for done in (site.plan(), site.apply()):
            assert done.returncode == 1, done.stdout + done.stderr
            assert f"domain {domid} ('db')" in done.stdout + done.stderr, done.stdout + done.stderr
        listed = [line.split()[:2] for line in site.served.sim("list").splitlines()[1:] if line.strip()]
        assert ["db", str(domid)] in listed, listed
    finally:
        site.close()
