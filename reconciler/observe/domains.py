"""Domains and VMs: `/local/domain/<domid>`, `/vm/<uuid>` and `/libxl/<domid>` -> VM.

Pure: reads a `Tree`, returns DomainInfo and VM values, logs problems on the tree.
Called by `reconciler.observe.observe_tree`; the mapping rules and their Xen reasons
are listed in that package's docstring.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from reconciler import vmdata
from reconciler.model.common import API_VERSION, NAME_PATTERN, PATTERN_WORDS
from reconciler.model.host import BUILDING
from reconciler.model.observed import DomainInfo, VmRecord
from reconciler.model.vm import VM
from reconciler.observe.tree import Tree, build_model

_VM_PATH = re.compile(r"/vm/([0-9A-Fa-f-]{36})")
_VIRTS = ("pv", "pvh", "hvm")
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Domain:
    """A guest domain as found under /local/domain: the key the device scans join on."""

    domid: int
    name: str
    uuid: str | None


def scan_domains(tree: Tree) -> dict[int, Domain]:
    """Every guest domain (domid > 0) listed under /local/domain, by domid."""
    found: dict[int, Domain] = {}
    for domid, key in tree.numeric_children("/local/domain", "domid"):
        if domid == 0:
            continue  # dom0 runs the toolstack; it is the host, not a VM
        base = f"/local/domain/{key}"
        name = tree.get(f"{base}/name")
        if not name:
            name = _fallback_name(tree, domid)
            tree.problem(f"{base}/name is missing (partial dump?); calling the domain {name!r}")
        if not _NAME.fullmatch(name):
            tree.bad_names.add(name)
            tree.problem(
                f"domain {domid} is named {name!r}, not a manifest name ({PATTERN_WORDS[NAME_PATTERN]}); "
                "its VM and devices are kept unvalidated and no manifest can match them"
            )
        found[domid] = Domain(domid, name, _uuid(tree, base))
    return found


def _fallback_name(tree: Tree, domid: int) -> str:
    """The PCI backend's `domain` node holds the guest name (reference 2.7)."""
    for backend in tree.children("/local/domain"):
        name = tree.get(f"/local/domain/{backend}/backend/pci/{domid}/0/domain")
        if name:
            return name
    return f"domain-{domid}"


def _uuid(tree: Tree, base: str) -> str | None:
    vm_path = tree.need(f"{base}/vm", "it names /vm/<uuid>, the domain's identity")
    if vm_path is None:
        return None
    m = _VM_PATH.fullmatch(vm_path.strip())
    if m is None:
        tree.problem(f"{base}/vm = {vm_path!r} is not /vm/<uuid>")
        return None
    return m.group(1).lower()


def vm_record(tree: Tree, uuid: str) -> VmRecord:
    """The reconciler's marker, digest and last-applied record of `/vm/<uuid>`."""
    base = f"/vm/{uuid}/reconciler"
    marker = tree.get(f"{base}/managed")
    managed = marker is not None and marker.strip().lower() in ("1", "true")
    return VmRecord(managed, tree.get(f"{base}/digest") or None, _applied(tree, f"{base}/applied"))


def orphan_records(tree: Tree, doms: dict[int, Domain]) -> dict[str, VmRecord]:
    """Records under `/vm/<uuid>/reconciler` whose uuid no listed domain holds, by uuid:
    a dead domain's leftover, or a live one whose `/local/domain/<domid>` was removed
    (`reconciler.observe.host.with_power` tells them apart with the hypervisor's list)."""
    held = {d.uuid for d in doms.values()}
    return {key.lower(): dataclasses.replace(vm_record(tree, key), name=tree.get(f"/vm/{key}/name") or None)
            for key in tree.children("/vm") if key.lower() not in held and tree.exists(f"/vm/{key}/reconciler")}


def domain_info(tree: Tree, dom: Domain) -> DomainInfo:
    managed, digest, applied, unfinished = False, None, None, False
    if dom.uuid is not None:
        record = vm_record(tree, dom.uuid)
        managed, digest, applied = record.managed, record.digest, record.applied
        # Written before `xl create`: an apply built this domain and stopped before its record.
        unfinished = tree.get(f"{BUILDING}/{dom.uuid}") == dom.name
        managed = managed or unfinished
    node = _recorded_sentinel(applied) if managed else None
    booted = None if node is None else bool(tree.get(f"/local/domain/{dom.domid}/{node}"))
    return DomainInfo(dom.name, dom.domid, dom.uuid, "running", managed, digest, applied, unfinished, booted)


def _applied(tree: Tree, path: str) -> str | None:
    """The last-applied record: the chunks `applied/0`, `applied/1`... joined in order
    (`reconciler.model.host.RECORD_CHUNK`), or the one value older versions wrote."""
    whole = tree.get(path)
    if whole:
        return whole
    chunks = sorted((int(key), key) for key in tree.children(path) if key.isdigit())
    if not chunks or [n for n, _ in chunks] != list(range(len(chunks))):
        return None if not chunks else "(the record's chunks are not numbered 0..n-1)"
    return "".join(tree.get(f"{path}/{key}") or "" for _, key in chunks)


def _recorded_sentinel(applied: str | None) -> str | None:
    """The `bootSentinel` node the last-applied record names, if it is readable (the
    diff reports an unreadable record; here it only means no sentinel is known)."""
    if applied is None or "bootSentinel" not in applied:
        return None
    try:
        vm = json.loads(applied).get("vm")
    except (ValueError, AttributeError):
        return None
    node = vm.get("bootSentinel") if isinstance(vm, dict) else None
    return node if isinstance(node, str) and node else None


def _virt(tree: Tree, dom: Domain) -> str:
    virt = tree.get(f"/libxl/{dom.domid}/type")
    if virt in _VIRTS:
        return virt
    # libxl writes hvmloader only for HVM domains (reference 2.1).
    guess = "hvm" if tree.exists(f"/local/domain/{dom.domid}/hvmloader") else "pv"
    shown = "missing" if virt is None else f"{virt!r}, not pv/pvh/hvm"
    tree.problem(f"/libxl/{dom.domid}/type is {shown}; domain {dom.name!r} taken as {guess}")
    return guess


def _memory(tree: Tree, dom: Domain) -> tuple[int, int] | None:
    """(memory, maxMemory) in MiB, or None when static-max is unreadable."""
    base = f"/local/domain/{dom.domid}/memory"
    static_max = tree.integer(f"{base}/static-max", "maximum memory in KiB")
    if static_max is None:
        return None
    target = tree.integer(f"{base}/target", "current memory in KiB")
    if target is None:
        target = static_max
    # libxl writes target minus video RAM; Arm writes videoram -1 (reference 2.2).
    videoram = tree.integer(f"{base}/videoram", "video RAM in KiB", required=False) or 0
    return (target + max(videoram, 0)) // 1024, static_max // 1024


def _vcpus(tree: Tree, dom: Domain) -> dict[str, object]:
    base = f"/local/domain/{dom.domid}/cpu"
    cpus = list(tree.numeric_children(base, "vcpu number"))
    if not cpus:
        tree.problem(f"{base} lists no vcpus; vcpus left unknown")
        return {}
    online = sum(1 for _, key in cpus if tree.get(f"{base}/{key}/availability") == "online")
    return {"vcpus": online, "maxVcpus": len(cpus)}


def _vm_data(tree: Tree, base: str) -> dict[str, str]:
    """The domain's whole vm-data/ subtree as `xenstoreData` keys (reconciler.vmdata)."""
    nodes: dict[str, str] = {}
    pending = [vmdata.ROOT]
    while pending:
        path = pending.pop()
        nodes[path] = tree.get(f"{base}/{path}") or ""
        pending += [f"{path}/{child}" for child in tree.children(f"{base}/{path}")]
    return vmdata.keys(nodes)


def build_vm(tree: Tree, dom: Domain) -> VM | None:
    """The VM model of one domain, or None (with a problem) when memory is unreadable."""
    memory = _memory(tree, dom)
    if memory is None:
        tree.problem(f"domain {dom.domid} ({dom.name!r}): no readable memory, so no VM model")
        return None
    spec: dict[str, object] = {"virt": _virt(tree, dom), "memory": memory[0], "maxMemory": memory[1]}
    if dom.uuid is not None:
        spec["uuid"] = dom.uuid
        for key in ("kernel", "ramdisk", "cmdline"):
            value = tree.get(f"/vm/{dom.uuid}/image/{key}")
            if value:
                spec[key] = value
    spec.update(_vcpus(tree, dom))
    data_keys = _vm_data(tree, f"/local/domain/{dom.domid}")
    if data_keys:
        spec["xenstoreData"] = data_keys
    data: dict[str, object] = {
        "apiVersion": API_VERSION,
        "kind": "VM",
        "metadata": {"name": dom.name},
        "spec": spec,
    }
    return build_model(VM, data, tree, f"VM {dom.name!r} (domain {dom.domid})")
