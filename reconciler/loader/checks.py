"""Checks that need more than one field or more than one resource (issue 2's list).

Pure: normalized entries -> diagnostics, each at the YAML node it concerns. Per resource:
memory and vCPU bounds, pv/pvh boot source, hvm-only fields, disk target, PCI bdf/match.
Across resources: duplicate names, uuids, vdevs, NIC indexes and MACs; references to
missing VMs; NIC backends that provide no network backend; dependency cycles; one host
device claimed by two VMs that may run at once; v4v endpoints that match no VM (warning);
one rpc-proxy rule given twice to one VM.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterator

from reconciler import v4v
from reconciler.errors import Diagnostic, Location, Severity
from reconciler.loader import hints
from reconciler.loader.locate import Path, mark_for
from reconciler.loader.normalize import Entry
from reconciler.loader.yamlsrc import location
from reconciler.model import KINDS, VM, Disk, NIC, PCIPassthrough, RPCRule, V4VRule

HVM_ONLY = ("boot", "hvm", "stubdom")
_MAY_REFER = frozenset({"VM", "Disk", "NIC"})  # kinds whose nested items can name a VM


def where(entry: Entry, *path: str | int, at_key: bool = False) -> Location:
    """Location of `path` inside the entry's document (relative to the entry itself)."""
    full: Path = (*entry.path, *path)
    return location(entry.document.file, mark_for(entry.document.node, full, at_key=at_key))


def diag(entry: Entry, path: tuple[str | int, ...], message: str, severity: Severity = "error", *, at_key: bool = False) -> Diagnostic:
    return Diagnostic(where(entry, *path, at_key=at_key), severity, message)


def spec_path(entry: Entry, *fields: str | int) -> tuple[str | int, ...]:
    """A spec field's path: under `spec:` for a document, directly in a nested item."""
    return fields if entry.path else ("spec", *fields)


def name_path(entry: Entry) -> tuple[str, ...]:
    return ("name",) if entry.path else ("metadata", "name")


def run_all(entries: list[Entry], broken_vms: frozenset[str] = frozenset(),
            broken_ends: frozenset[tuple[str, str]] = frozenset()) -> list[Diagnostic]:
    """Every check; `broken_vms` names VMs whose documents failed validation, so that
    references to them are not reported a second time as missing (`broken_ends`: the
    v4v endpoints they would be, ("dom-name"|"dom-type"|"uuid", value)). Each check gets only
    the entries it looks at (in file order), so most look at one kind."""
    of: dict[str, list[Entry]] = {kind: [] for kind in KINDS}
    linked: Linked = []
    for entry in entries:
        kind = entry.resource.kind
        of[kind].append(entry)
        if kind in _MAY_REFER or not entry.path:  # nested PCI devices and v4v rules refer to no VM
            refs = _vm_refs(entry)
            if refs:
                linked.append((entry, refs))
    vms = {e.resource.metadata.name: e for e in of["VM"]}
    return [
        *check_resources([*of["VM"], *of["Disk"], *of["PCIPassthrough"]]),
        *check_duplicate_names(entries),
        *check_duplicate_uuids(of["VM"]),
        *check_references(linked, vms, broken_vms),
        *check_cycles(linked, vms),
        *check_device_keys(of["Disk"], of["NIC"]),
        *check_pci_conflicts(of["PCIPassthrough"], vms),
        *check_guest_slots(of["PCIPassthrough"]),
        *check_v4v_targets(of["V4VRule"], of["VM"], broken_ends),
        *check_rpc_duplicates(of["RPCRule"]),
    ]


def check_resources(entries: list[Entry]) -> Iterator[Diagnostic]:
    for entry in entries:
        r = entry.resource
        if isinstance(r, VM):
            yield from _check_vm(entry, r)
        elif isinstance(r, Disk) and not r.spec.target and r.spec.devtype != "cdrom":
            yield diag(entry, spec_path(entry, "target"), "target: a disk needs a target path; only a cdrom may be empty", at_key=True)
        elif isinstance(r, Disk) and r.spec.script and r.spec.format != "raw":
            yield diag(entry, spec_path(entry, "script"), f"script: a disk with a script is attached by the phy backend, "
                       f"which takes raw images only; this one is {r.spec.format} (xl refuses it: no suitable backend)",
                       at_key=True)
        elif isinstance(r, PCIPassthrough) and (r.spec.bdf is None) == (r.spec.match is None):
            found = "both" if r.spec.bdf else "neither"
            yield diag(entry, spec_path(entry, "bdf"), f"give exactly one of 'bdf' or 'match', found {found}", at_key=True)


def _check_vm(entry: Entry, vm: VM) -> Iterator[Diagnostic]:
    s = vm.spec
    if s.max_memory is not None and s.max_memory < s.memory:
        yield diag(entry, ("spec", "maxMemory"), f"spec.maxMemory ({s.max_memory} MiB) must be >= memory ({s.memory} MiB)")
    if s.max_vcpus is not None and s.vcpus > s.max_vcpus:
        yield diag(entry, ("spec", "vcpus"), f"spec.vcpus ({s.vcpus}) must be <= maxVcpus ({s.max_vcpus})")
    if s.virt in ("pv", "pvh") and not (s.kernel or s.bootloader):
        yield diag(entry, ("spec", "virt"), f"spec: a {s.virt} VM needs 'kernel' or 'bootloader' (hvm boots from its disks)")
    if s.virt != "hvm":
        written = _raw_spec(entry)
        for yaml_name in HVM_ONLY:
            if yaml_name in written:
                yield diag(entry, ("spec", yaml_name), f"spec.{yaml_name} applies to hvm VMs only; this VM is {s.virt}", at_key=True)


def check_duplicate_names(entries: list[Entry]) -> Iterator[Diagnostic]:
    """Two resources of one kind with one name. Two items of one VM that are the same
    device or rule get one default name: that is said once, as what is given twice (a
    vdev, a NIC index, a host device by its own checks; a v4v rule here), not as a name."""
    first: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        key = (entry.resource.kind, entry.resource.metadata.name)
        if key in first and same_item(first[key], entry):
            r, twin = entry.resource, first[key]
            if isinstance(r, V4VRule):
                yield diag(entry, spec_path(entry, "rule"), f"rule '{r.spec.rule}' is given twice to VM "
                           f"'{r.spec.vm}' (first at {where(twin, *spec_path(twin, 'rule'))}); remove one")
            elif isinstance(r, PCIPassthrough) and (m := r.spec.match) is not None:
                yield diag(entry, spec_path(entry, "match"), f"match class={m.class_} vendor={m.vendor} device={m.device} "
                           f"is given twice to VM '{r.spec.vm}' (first at {where(twin, *spec_path(twin, 'match'), at_key=True)}); "
                           "remove one", at_key=True)
            continue  # Disk, NIC, PCI bdf, rpc: check_device_keys, check_pci_conflicts, check_rpc_duplicates say so
        if key in first:
            other = where(first[key], *name_path(first[key]))
            yield diag(entry, name_path(entry), f"{entry.kind} '{entry.name}' is defined twice: here and at {other}")
        else:
            first[key] = entry


def check_duplicate_uuids(entries: list[Entry]) -> Iterator[Diagnostic]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        if isinstance(entry.resource, VM) and entry.resource.spec.uuid:
            uuid = entry.resource.spec.uuid
            if uuid in seen and seen[uuid].name != entry.name:
                yield diag(entry, ("spec", "uuid"), f"uuid {uuid} is also used by VM '{seen[uuid].name}'; VM uuids must be unique")
            seen.setdefault(uuid, entry)


Ref = tuple[tuple[str | int, ...], str, str]  # path, referenced VM, field
Linked = list[tuple[Entry, list[Ref]]]  # entries that reference VMs, with their references


def _vm_refs(entry: Entry) -> list[Ref]:
    """(path, referenced VM, field) for every reference from this entry to a VM."""
    r = entry.resource
    if isinstance(r, VM):
        return [(("spec", "dependsOn", i), dep, "dependsOn") for i, dep in enumerate(r.spec.depends_on)]
    refs: list[Ref] = [] if entry.path else [(("spec", "vm"), r.spec.vm, "vm")]
    if isinstance(r, (Disk, NIC)) and r.spec.backend_vm:
        refs.append((spec_path(entry, "backendVM"), r.spec.backend_vm, "backendVM"))
    return refs


def not_network_backend(target: str) -> str:
    return f"backendVM: VM '{target}' does not provide a network backend (set providesNetworkBackend: true on it)"


def check_references(linked: Linked, vms: dict[str, Entry], broken_vms: frozenset[str] = frozenset()) -> Iterator[Diagnostic]:
    known = [*vms, *broken_vms]  # a VM whose document failed is still a name the author wrote
    for entry, refs in linked:
        for path, target, field in refs:
            if target in broken_vms:
                continue
            if target not in vms:
                yield diag(entry, path, hints.missing_vm(field, target, known))
            elif field == "backendVM" and isinstance(entry.resource, NIC):
                backend = vms[target].resource
                if isinstance(backend, VM) and not backend.spec.provides_network_backend:
                    yield diag(entry, path, not_network_backend(target))


Edge = tuple[str, str, str, Entry, tuple[str | int, ...]]  # owner, needs, field, entry, path


def dependency_edges(linked: Linked, vms: dict[str, Entry]) -> list[Edge]:
    """VM -> VM it needs running first (dependsOn, NIC and disk backendVM), with the entry
    and path that created each edge; sorted, so cycle reports are deterministic."""
    edges = []
    for entry, refs in linked:
        owner = entry.name if isinstance(entry.resource, VM) else entry.resource.spec.vm
        for path, target, field in refs:
            if field != "vm" and owner in vms and target in vms:
                edges.append((owner, target, field, entry, path))
    return sorted(edges, key=lambda e: (e[0], e[1], e[2]))


def check_cycles(linked: Linked, vms: dict[str, Entry]) -> Iterator[Diagnostic]:
    edges = dependency_edges(linked, vms)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for owner, target, *_ in edges:
        sorter.add(owner, target)
    try:
        sorter.prepare()  # stdlib and cheap: the common, acyclic case never imports networkx
    except graphlib.CycleError:
        yield from _report_cycles(edges)


def _report_cycles(edges: list[Edge]) -> Iterator[Diagnostic]:
    """One diagnostic per strongly connected component, starting at its smallest name."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    for owner, target, field, entry, path in edges:
        if not graph.has_edge(owner, target):
            graph.add_edge(owner, target, field=field, entry=entry, path=path)
    for component in sorted((sorted(c) for c in nx.strongly_connected_components(graph)), key=lambda c: c[0]):
        start = component[0]
        if len(component) == 1 and not graph.has_edge(start, start):
            continue
        cycle = [edge[:2] for edge in nx.find_cycle(graph.subgraph(component), source=start)]
        names = " -> ".join([cycle[0][0]] + [b for _, b in cycle])
        steps = ", ".join(
            f"{a} {graph.edges[a, b]['field']} at {where(graph.edges[a, b]['entry'], *graph.edges[a, b]['path'])}" for a, b in cycle
        )
        first = graph.edges[cycle[0]]
        yield diag(first["entry"], first["path"], f"dependency cycle: {names} ({steps})")


def check_device_keys(disks: list[Entry], nics: list[Entry]) -> Iterator[Diagnostic]:
    """Per VM: unique vdev and NIC index; across the host: unique explicit MACs."""
    keys: dict[tuple[str, str, object], Entry] = {}
    key: tuple[str, str, object]
    for entry in (*disks, *nics):
        r = entry.resource
        if isinstance(r, Disk):
            key = (r.spec.vm, "vdev", r.spec.vdev)
        elif isinstance(r, NIC):
            key = (r.spec.vm, "index", r.spec.index)
        else:
            continue
        if key in keys:
            other = keys[key]
            what = f"vdev {key[2]}" if key[1] == "vdev" else f"NIC index {key[2]}"
            by = f"by {entry.kind} '{entry.name}' and '{other.name}'" if entry.name != other.name else "first"
            yield diag(entry, spec_path(entry, key[1]), f"{what} is used twice in VM '{key[0]}': {by} at {where(other, *name_path(other))}")
        else:
            keys[key] = entry
    yield from _duplicate_macs(nics)


def _duplicate_macs(entries: list[Entry]) -> Iterator[Diagnostic]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        r = entry.resource
        if not isinstance(r, NIC) or not _explicit(entry, "mac"):
            continue
        if r.spec.mac in seen:
            other = seen[r.spec.mac]
            yield diag(entry, spec_path(entry, "mac"), f"MAC {r.spec.mac} is also used by NIC '{other.name}' at {where(other, *spec_path(other, 'mac'))}")
        else:
            seen[r.spec.mac] = entry


def _raw_spec(entry: Entry) -> dict[str, object]:
    """The spec mapping as written (to tell a written field from a defaulted one)."""
    raw = entry.document.value
    for step in entry.path:
        raw = raw[step]
    if not entry.path:
        raw = raw.get("spec")
    return raw if isinstance(raw, dict) else {}


def _explicit(entry: Entry, field: str) -> bool:
    return _raw_spec(entry).get(field, "auto") != "auto"


def _may_run(vm: Entry | None) -> bool:
    return vm is not None and isinstance(vm.resource, VM) and vm.resource.spec.state != "stopped"


def check_pci_conflicts(entries: list[Entry], vms: dict[str, Entry]) -> Iterator[Diagnostic]:
    """One host device, two VMs that may run at once (neither is `state: stopped`)."""
    claims: dict[str, Entry] = {}
    for entry in entries:
        r = entry.resource
        if not isinstance(r, PCIPassthrough) or r.spec.bdf is None:
            continue
        other = claims.get(r.spec.bdf)
        if other is None:
            claims[r.spec.bdf] = entry
            continue
        other_vm = other.resource.spec.vm  # type: ignore[union-attr]
        if other_vm == r.spec.vm:
            yield diag(entry, spec_path(entry, "bdf"), f"host device {r.spec.bdf} is passed to VM '{r.spec.vm}' twice (also at {where(other, *spec_path(other, 'bdf'))})")
        elif _may_run(vms.get(r.spec.vm)) and _may_run(vms.get(other_vm)):
            yield diag(
                entry,
                spec_path(entry, "bdf"),
                f"host device {r.spec.bdf} is claimed by VMs '{other_vm}' and '{r.spec.vm}', which may run at the same time "
                f"(other claim at {where(other, *spec_path(other, 'bdf'))}); set state: stopped on one of them or pass another device",
            )


def check_guest_slots(entries: list[Entry]) -> Iterator[Diagnostic]:
    """Per VM: one device per guest PCI slot (`xl pci-attach` refuses a taken vslot)."""
    slots: dict[tuple[str, int], Entry] = {}
    for entry in entries:
        r = entry.resource
        if not isinstance(r, PCIPassthrough) or r.spec.guest_slot is None:
            continue
        key = (r.spec.vm, r.spec.guest_slot)
        other = slots.setdefault(key, entry)
        if other is not entry:
            yield diag(entry, spec_path(entry, "guestSlot"),
                       f"guest slot 0x{key[1]:02x} is used twice in VM '{key[0]}': by PCIPassthrough '{entry.name}' and "
                       f"'{other.name}' at {where(other, *spec_path(other, 'guestSlot'))}; give each device its own guestSlot")


def check_v4v_targets(rules: list[Entry], vms: list[Entry], broken: frozenset[tuple[str, str]] = frozenset()) -> Iterator[Diagnostic]:
    """Endpoints naming a VM, type or uuid that no manifest defines: a warning, because
    the VM may be added later (the rule stays inert until it runs, as in OpenXT)."""
    specs = [e.resource.spec for e in vms if isinstance(e.resource, VM)]
    names = {e.resource.metadata.name for e in vms}
    types = {spec.type for spec in specs}
    uuids = {spec.uuid for spec in specs}
    for entry in rules:
        r = entry.resource
        if not isinstance(r, V4VRule):
            continue
        rule = v4v.parse_rule(r.spec.rule)
        for endpoint in (rule.client, rule.server):
            d = endpoint.domain
            missing = (d.kind == "dom-name" and d.value not in names) or (d.kind == "dom-type" and d.value not in types) or (d.kind == "uuid" and d.value not in uuids)
            if missing and (d.kind, d.value) not in broken:
                what = {"dom-name": "VM named", "dom-type": "VM of type", "uuid": "VM with uuid"}[d.kind]
                yield diag(entry, spec_path(entry, "rule"), f"rule '{r.spec.rule}': no {what} '{d.value}' in the manifests; the rule stays inactive until one runs", "warning")


def same_item(a: Entry, b: Entry) -> bool:
    """Are two resources the same device or rule of one VM (so one default name)? A
    disk's vdev, a NIC's index, a PCI rule's bdf or match, a rule's text (and for v4v its
    direction) identify them (`normalize.default_name`)."""
    ra, rb = a.resource, b.resource
    if isinstance(ra, VM) or isinstance(rb, VM) or ra.spec.vm != rb.spec.vm:
        return False
    if isinstance(ra, Disk) and isinstance(rb, Disk):
        return ra.spec.vdev == rb.spec.vdev
    if isinstance(ra, NIC) and isinstance(rb, NIC):
        return ra.spec.index == rb.spec.index
    if isinstance(ra, PCIPassthrough) and isinstance(rb, PCIPassthrough):
        return (ra.spec.bdf, ra.spec.match) == (rb.spec.bdf, rb.spec.match)
    if isinstance(ra, V4VRule) and isinstance(rb, V4VRule):
        return (ra.spec.rule, ra.spec.bidirectional) == (rb.spec.rule, rb.spec.bidirectional)
    return isinstance(ra, RPCRule) and isinstance(rb, RPCRule) and ra.spec.rule == rb.spec.rule


def check_rpc_duplicates(rules: list[Entry]) -> Iterator[Diagnostic]:
    """One VM given the same rpc-proxy rule twice (canonical text, nested or standalone):
    an error at the second, since the copy decides nothing and both would get one name."""
    seen: dict[tuple[str, str], Entry] = {}
    for entry in rules:
        r = entry.resource
        if not isinstance(r, RPCRule):
            continue
        other = seen.setdefault((r.spec.vm, r.spec.rule), entry)
        if other is not entry:
            yield diag(entry, spec_path(entry, "rule"), f"rule '{r.spec.rule}' is given twice to VM '{r.spec.vm}' "
                       f"(first at {where(other, *spec_path(other, 'rule'))}); remove one")
