"""Observe: a xenstore tree (`{path: value}`) -> ObservedState, in the manifest models.

Pure: `observe_tree` takes the nodes of a live xenstore walk or of a captured dump
(the CLI reads those through drivers) and returns a value; it never raises on what
it finds, every oddity becomes a sentence in `ObservedState.problems`.

Mapping rules, each with its Xen reason (numbers are sections of reference/xen.md):
- Domains are the numeric children of `/local/domain` with their `name` (2.1); domid
  0 is dom0, the host itself, and is skipped. A `/vm/<uuid>` without a
  `/local/domain/<d>` is a dead domain's leftover and is not listed (its
  `reconciler/` record is kept in `vm_records`: a domain the hypervisor still lists
  whose tree was removed is matched to it by `reconciler.observe.host`). Non-numeric
  domids are reported and skipped.
- uuid: `/local/domain/<d>/vm` is `/vm/<uuid>` (2.1). managed/digest:
  `/vm/<uuid>/reconciler/{managed,digest,applied/<i>}`, which the reconciler writes
  (DESIGN 5; the record's chunks are joined). A domain whose uuid is listed under
  `/reconciler/building` with its name is managed and `unfinished`: an apply wrote that
  intent before `xl create` and stopped before writing the record (libxl empties
  `/vm/<uuid>` when it builds a domain, so the intent lives outside it).
- virt: `/libxl/<d>/type` (2.1). Absent: hvm if `/local/domain/<d>/hvmloader` exists
  (libxl writes it for HVM only), else pv; reported either way.
- memory MiB = (`memory/target` + max(`memory/videoram`, 0)) // 1024, because libxl
  writes target minus video RAM and Arm writes videoram -1 (2.2); maxMemory =
  `memory/static-max` // 1024. No static-max: no VM model (reported).
- vcpus = `cpu/<i>/availability == online` count, maxVcpus = number of `cpu/<i>` (2.2).
- kernel/ramdisk/cmdline from `/vm/<uuid>/image/*`, written for PV only (2.2); left
  unset otherwise. Power state is `running`: pause and shutdown live in the hypervisor,
  not in xenstore (2.9), so a tree cannot show them.
- Devices come from backend dirs `/local/domain/<B>/backend/<kind>/<d>/<devid>`, the
  state the host actually runs; `/libxl/<d>/device` is only the intent copy (2.3).
  Names are `<vm>-<disk|nic|pci>-<devid>`. A backend other than dom0 is `backendVM`.
  Devices of dom0 itself (QEMU's own qdisk) are skipped: dom0 is not a VM.
- Disk (vbd, qdisk, vbd3; 2.4): target = `params` minus a `<fmt>:` prefix (qdisk
  writes `qcow2:/x`, `aio:` meaning raw), format from that prefix or raw, vdev = `dev`
  (else from the devid), access from `mode` w/r, devtype = `device-type`, discard =
  `discard-enable`.
- NIC (vif; 2.5): index = devid, mac, bridge, vifname, ip, mtu (absent means 1500,
  libxl omits the default), type `vif_ioemu` -> ioemu, rate `<bytes>,<usecs>` ->
  the canonical xl spelling (`xenfmt.rate_from_xenstore`).
- Scripts: the default `block` / `vif-bridge` that libxl writes when none is
  configured are left unset, so they compare equal to a manifest that names none.
- PCI (2.7): per guest one backend `.../backend/pci/<d>/0`; device i is `dev-<i>`,
  `opts-<i>` gives permissive/msitranslate/power_mgmt, `vdevfn-<i>` (slot << 3 |
  function) gives guestSlot. Assignable host devices: `/libxl/pci/<DDDD-BB-SS-F>`
  and the older `/libxl/pciback/<...>` without `domid`. Devices the reconciler itself
  bound: `/reconciler/pciback/<DDDD-BB-SS-F>` (its own record, DESIGN 7).
- Stranded devices: a disk's or NIC's `/libxl/<d>/device/<vbd|vif>/<devid>` copy whose
  `backend` directory is gone (its backend domain died: 1.10 item 9) is listed apart,
  not as a device: libxl cannot add it again until a detach cleans it up (2.3).
- Health: reference 2.8, see `reconciler.observe.health`. Boot sentinel of a managed
  domain: the node its last-applied record's `bootSentinel` names under
  `/local/domain/<d>/`, `booted` when non-empty (openxt.md 1.5: what xenmgr waits for).
- Models are built with `model_validate` on camelCase dicts; when a host value breaks
  a manifest-only rule (libxl allows `guest_centos7`, manifests do not) the model is
  built with `model_construct` instead and a problem says why it cannot match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from reconciler.model.host import BUILDING, PCIBACK_RECORDS, RPC_ENTRIES
from reconciler.model.observed import ObservedState
from reconciler.observe.devices import scan_devices
from reconciler.observe.domains import build_vm, domain_info, orphan_records, scan_domains
from reconciler.observe.render import observed_to_data
from reconciler.observe.tree import Tree
from reconciler.xenfmt import parse_bdf

__all__ = ["observe_tree", "observed_to_data"]

T = TypeVar("T")


def _sorted(table: Mapping[str, T]) -> dict[str, T]:
    return dict(sorted(table.items()))


def _pci_assignable(tree: Tree) -> tuple[str, ...]:
    found: set[str] = set()
    for root in ("/libxl/pci", "/libxl/pciback"):
        for key in tree.children(root):
            if tree.get(f"{root}/{key}/domid"):
                continue  # assigned to a running domain: not free (2.7)
            try:
                found.add(str(parse_bdf(key.replace("-", ":", 2).replace("-", "."))))
            except ValueError:
                tree.problem(f"{root}/{key}: not a DDDD-BB-SS-F PCI address; skipped")
    return tuple(sorted(found))


def _pciback_bound(tree: Tree) -> dict[str, str | None]:
    """The reconciler's own records of the devices it bound to pciback (DESIGN 7)."""
    found: dict[str, str | None] = {}
    for key in tree.children(PCIBACK_RECORDS):
        try:
            bdf = str(parse_bdf(key.replace("-", ":", 2).replace("-", ".")))
        except ValueError:
            tree.problem(f"{PCIBACK_RECORDS}/{key}: not a DDDD-BB-SS-F PCI address; skipped")
            continue
        found[bdf] = tree.get(f"{PCIBACK_RECORDS}/{key}") or None
    return dict(sorted(found.items()))


def observe_tree(nodes: Mapping[str, str], *, truncated: frozenset[str] = frozenset()) -> ObservedState:
    """Everything `nodes` shows about the host's guests, sorted by name."""
    tree = Tree(nodes, truncated)
    doms = scan_domains(tree)
    vms = {d.name: vm for d in doms.values() if (vm := build_vm(tree, d)) is not None}
    devices = scan_devices(tree, doms)
    assignable = _pci_assignable(tree)
    for path in sorted(truncated):
        tree.problem(f"{path}: value was truncated by the dump; read {nodes.get(path, '')!r} as is")
    return ObservedState(
        vms=_sorted(vms),
        disks=_sorted(devices.disks),
        nics=_sorted(devices.nics),
        pci=_sorted(devices.pci),
        domains=_sorted({d.name: domain_info(tree, d) for d in doms.values()}),
        health=_sorted(devices.health),
        pci_assignable=assignable,
        pciback_bound=_pciback_bound(tree),
        stranded=_sorted(devices.stranded),
        building={uuid: tree.get(f"{BUILDING}/{uuid}") or "" for uuid in sorted(tree.children(BUILDING))},
        rpc_owned={uuid: tree.get(f"{RPC_ENTRIES}/{uuid}") or "" for uuid in sorted(tree.children(RPC_ENTRIES))},
        vm_records=orphan_records(tree, doms),
        problems=tuple(tree.problems),
    )
