"""Normalization: validated resources -> one canonical form with every default filled.

Pure. Nested devices become standalone resources named by what identifies them
(`default_name`, DESIGN section 4), so inserting or reordering items renames none: a
Disk `<vm>-<vdev>`, a NIC `<vm>-nic<index>`, a PCI rule `<vm>-pci-<DDDD-BB-SS-F>` or
`<vm>-pci-<class>-<vendor>-<device>` (hex digits without `0x`, or `any`), v4v and rpc-proxy
rules `<vm>-v4v-<hash>` / `<vm>-rpc-<hash>` (the first 8 hex digits of the sha256 of the
canonical rule text; a one-way v4v rule hashes the text with ` one-way` added, so it
and its bidirectional twin differ; rpc rules are evaluated in the order they are
written, `DesiredState.rpc_rules_of`);
VM uuid, maxMemory, maxVcpus and hvm boot order get their defaults; disks get their
access mode; NICs their index (position among the VM's NICs: nested first, then
standalone in file order) and, for `mac: auto`, the deterministic MAC; a relative Disk/NIC
`script` becomes the path libxl runs (`vif-bridge` -> `/etc/xen/scripts/vif-bridge`,
`xenfmt.script_path`), so plans show it as the host does. Called by `reconciler.loader.load` before the checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from reconciler import xenfmt
from reconciler.loader.locate import Path
from reconciler.loader.models import make, updated
from reconciler.loader.yamlsrc import Document
from reconciler.model import VM, Disk, DiskSpec, Metadata, NIC, NICSpec, PCIPassthrough, PciMatch, PCISpec, Resource, RPCRule, RPCRuleSpec, V4VRule, V4VRuleSpec, VMSpec, default_vm_uuid

NAME_MAX = 63
_LISTS_CLEARED = ("disks", "nics", "pci", "v4v_rules", "rpc_rules")


@dataclass(frozen=True)
class _Nested:
    """One nested device list: the VM spec field, its YAML key, and the standalone
    model (and spec) each item becomes."""

    field: str
    key: str
    model: type[Disk] | type[NIC] | type[PCIPassthrough] | type[V4VRule] | type[RPCRule]
    spec: type[DiskSpec] | type[NICSpec] | type[PCISpec] | type[V4VRuleSpec] | type[RPCRuleSpec]

    @property
    def header(self) -> dict[str, Any]:
        """apiVersion and kind, as model_construct would default them."""
        return {name: self.model.model_fields[name].default for name in ("api_version", "kind")}


NESTED: tuple[_Nested, ...] = tuple(
    _Nested(field, VMSpec.model_fields[field].alias or field, model, spec)
    for field, model, spec in (
        ("disks", Disk, DiskSpec),
        ("nics", NIC, NICSpec),
        ("pci", PCIPassthrough, PCISpec),
        ("v4v_rules", V4VRule, V4VRuleSpec),
        ("rpc_rules", RPCRule, RPCRuleSpec),
    )
)
_HEADERS = {nested.field: nested.header for nested in NESTED}
# Fields sets, one per class, shared by every device `_expand` builds (a set per model was
# 27,000 objects per 1,000 VMs for the garbage collector to walk). pydantic never changes
# a frozen model's set in place: model_copy copies it, and model_construct keeps the set
# it is given, as here. Every spec is built with all of its fields.
_METADATA_SET = {"name", "labels"}
_DEVICE_SET = {"metadata", "spec"}
_SPEC_SETS = {nested.field: set(nested.spec.model_fields) for nested in NESTED}


class Entry(NamedTuple):
    """A resource and where it was written: its document and the path inside it.
    A named tuple: the loader makes one per resource, 10,000 for 1,000 VMs."""

    resource: Resource
    document: Document
    path: Path = ()

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.metadata.name



def normalize(entries: list[Entry]) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """Every nested device as a standalone entry just before its VM, every default filled;
    plus (entry, message) for default names that are too long. Each model is built once,
    with its final values (see `reconciler.loader.models`)."""
    uuids = {e.name: e.resource.spec.uuid or default_vm_uuid(e.name) for e in entries if isinstance(e.resource, VM)}
    nics_seen: dict[str, int] = {}  # per VM name: NICs given a position so far
    out: list[Entry] = []
    problems: list[tuple[Entry, str]] = []
    standalone_nics: list[int] = []
    for entry in entries:
        resource = entry.resource
        if isinstance(resource, VM):
            _expand(entry, resource, uuids, nics_seen, out, problems)
            out.append(Entry(_vm_defaults(resource, uuids[resource.metadata.name]), entry.document))
        elif isinstance(resource, Disk) and (fixes := _disk_changes(resource.spec.access, resource.spec.devtype,
                                                                     resource.spec.script)):
            out.append(Entry(resource.model_copy(update={"spec": resource.spec.model_copy(update=fixes)}), entry.document))
        else:
            if isinstance(resource, NIC):
                standalone_nics.append(len(out))
            out.append(entry)
    for at in standalone_nics:  # after every nested NIC: they come first
        nic: NIC = out[at].resource  # type: ignore[assignment]
        spec = nic.spec
        changes = _nic_changes(spec.index, spec.mac, nics_seen.get(spec.vm, 0), uuids.get(spec.vm), spec.script)
        nics_seen[spec.vm] = nics_seen.get(spec.vm, 0) + 1
        out[at] = Entry(nic.model_copy(update={"spec": spec.model_copy(update=changes)}), out[at].document)
    return out, problems


def _expand(entry: Entry, vm: VM, uuids: dict[str, str], nics_seen: dict[str, int], out: list[Entry], problems: list[tuple[Entry, str]]) -> None:
    """Append the VM's nested devices to `out` as standalone entries, with their defaults
    (and to `problems` those whose default name is too long)."""
    vm_name = vm.metadata.name
    labels = vm.metadata.labels
    document = entry.document
    for nested in NESTED:
        items = getattr(vm.spec, nested.field)
        if not items:
            continue
        field, key, model, spec_model = nested.field, nested.key, nested.model, nested.spec
        header, spec_set = _HEADERS[field], _SPEC_SETS[field]
        for index, item in enumerate(items):
            values = item.__dict__.copy()  # the shared fields in order, then `name`: the spec's, but `vm`
            name = values.pop("name")
            values["vm"] = vm_name
            if field == "disks":
                values.update(_disk_changes(values["access"], values["devtype"], values["script"]))
            elif field == "nics":
                values.update(_nic_changes(values["index"], values["mac"], nics_seen.get(vm_name, 0), uuids[vm_name],
                                           values["script"]))
                nics_seen[vm_name] = nics_seen.get(vm_name, 0) + 1
            defaulted = name is None
            if defaulted:
                name = default_name(field, vm_name, values)
            metadata = make(Metadata, {"name": name, "labels": dict(labels)}, _METADATA_SET)
            spec = make(spec_model, values, spec_set)
            device = make(model, {**header, "metadata": metadata, "spec": spec}, _DEVICE_SET)
            out.append(Entry(device, document, ("spec", key, index)))
            if defaulted and len(metadata.name) > NAME_MAX:  # a given name matched the name pattern
                problems.append((out[-1], f"default name {metadata.name!r} is longer than {NAME_MAX} characters; give the item a name"))


def default_name(field: str, vm: str, values: dict[str, Any]) -> str:
    """The default name of a nested item of VM `vm`'s list `field` (a VMSpec field name),
    from its normalized spec `values` (NIC index filled): what identifies the item."""
    if field == "disks":
        return f"{vm}-{values['vdev']}"
    if field == "nics":
        return f"{vm}-nic{values['index']}"
    if field == "pci":
        return pci_rule_name(vm, values["bdf"], values["match"])
    if field == "v4v_rules":
        return v4v_rule_name(vm, values["rule"], values["bidirectional"])
    return rpc_rule_name(vm, values["rule"])


def pci_rule_name(vm: str, bdf: str | None, match: PciMatch | None) -> str:
    """`<vm>-pci-0000-00-19-0` for a bdf rule (domain 0000 when the bdf omits it),
    `<vm>-pci-0300-any-any` for a match rule (class, vendor, device: hex digits or `any`)."""
    if bdf is not None:
        return f"{vm}-pci-{xenfmt.parse_bdf(bdf).xenstore_key}"
    if match is not None:
        ids = (match.class_, match.vendor, match.device)
        return f"{vm}-pci-" + "-".join(value.lower().removeprefix("0x") for value in ids)
    return f"{vm}-pci"  # neither: an error the checks report ('give exactly one of bdf or match')


def v4v_rule_name(vm: str, rule: str, bidirectional: bool = True) -> str:
    """`<vm>-v4v-<first 8 hex of sha256(rule)>`, `rule` in canonical spelling; a one-way
    rule hashes `<rule> one-way`, so it is never named as its bidirectional twin."""
    text = rule if bidirectional else f"{rule} one-way"
    return f"{vm}-v4v-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def rpc_rule_name(vm: str, rule: str) -> str:
    """The default name of a nested rpc rule: `<vm>-rpc-<first 8 hex of sha256(rule)>`,
    `rule` in canonical spelling (so respacing a rule does not rename it)."""
    return f"{vm}-rpc-{hashlib.sha256(rule.encode()).hexdigest()[:8]}"


def _vm_defaults(vm: VM, uuid: str) -> VM:
    spec = vm.spec
    changes: dict[str, Any] = {name: [] for name in _LISTS_CLEARED}
    changes["uuid"] = uuid
    if spec.max_memory is None:
        changes["max_memory"] = spec.memory
    if spec.max_vcpus is None:
        changes["max_vcpus"] = max(spec.vcpus, 1)
    if spec.virt == "hvm" and spec.boot is None:
        changes["boot"] = "cd"
    return updated(vm, {"spec": updated(spec, changes)})


def _disk_changes(access: str | None, devtype: str, script: str | None) -> dict[str, Any]:
    """A disk's access mode (rw, ro for a cdrom) unless given, and its script as libxl runs it."""
    changes: dict[str, Any] = {}
    if access is None:
        changes["access"] = "ro" if devtype == "cdrom" else "rw"
    if relative := _relative(script):
        changes["script"] = xenfmt.script_path(relative)
    return changes


def _relative(script: str | None) -> str:
    """A script named relative to /etc/xen/scripts ('' otherwise). One that is not a line
    of printable text stays as written, for validate to point into the text the user wrote."""
    return script if script and script.isprintable() and script != xenfmt.script_path(script) else ""


def _nic_changes(index: int | None, mac: str, position: int, vm_uuid: str | None, script: str | None) -> dict[str, Any]:
    """A NIC's index (its position unless given), for `mac: auto` its MAC, and its script
    as libxl runs it."""
    final = position if index is None else index
    changes: dict[str, Any] = {"index": final}
    if mac == "auto" and vm_uuid is not None:
        changes["mac"] = xenfmt.auto_mac(vm_uuid, final)
    if relative := _relative(script):
        changes["script"] = xenfmt.script_path(relative)
    return changes
