"""Hypothesis strategy: small, valid manifest sets that use what the reconciler manages.

Pure: draws -> `ManifestSet` (YAML documents and what a test needs to know about them).
Each set has 2-6 VMs: maybe a network backend VM (`net`, providesNetworkBackend, a
bootSentinel the simulated guest writes) that other VMs' NICs use; `dependsOn` on earlier
running VMs and `startPriority`; disks, NICs, PCI rules (bdf or match, options, greedy,
seize) over the simulated laptop's PCI inventory, each host device claimed by one VM at
most; v4v rules of every shape of the grammar (`reconciler/v4v.py`: `*`, `myself`,
`my-stubdom`, `dom-type=`, `dom-name=`, `0`, a uuid; no port, `:*`, a port; nested
shorthand, `{rule, bidirectional: false}` and standalone V4VRule documents);
`xenstoreData`; and rpc-proxy rules and properties (`RPC_RULES`, by the VM's position, so
adding them drew nothing and the sets drawn before stay the same). Devices are nested in the VM or written as standalone documents.
Scripts are relative, absolute or the default written out; only raw disks get one (libxl
runs no script for a qcow2/vhd disk, and validate refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st

from reconciler import v4v
from reconciler.loader.normalize import pci_rule_name, v4v_rule_name
from reconciler.model import PciMatch, default_vm_uuid
from reconciler.xenfmt import parse_bdf

API = "xen.reconciler/v1"
NET = "net"  # the network backend VM, when the set has one
SENTINEL = "booted"

# The simulated laptop's inventory (drivers/sim/pci.py) minus the host bridge and the
# NVMe dom0 boots from: (bdf, class, vendor, device).
PCI_DEVICES = (
    ("0000:00:02.0", "0x0300", "0x8086", "0x9b41"),  # UHD Graphics, i915
    ("0000:00:14.0", "0x0c03", "0x8086", "0x02ed"),  # xHCI, xhci_hcd
    ("0000:00:1f.3", "0x0403", "0x8086", "0x02c8"),  # HD audio, snd_hda_intel
    ("0000:00:1f.6", "0x0200", "0x8086", "0x0d4f"),  # I219 Ethernet, e1000e
    ("0000:02:00.0", "0x0280", "0x8086", "0x2723"),  # AX200 Wi-Fi, iwlwifi
)
TYPES = ("svm", "web", "db")
# A VM's rpc-proxy rules, by its position in the set (index % 3), and `usb-control` set on
# every other VM: no draw, so the sets hypothesis draws are those it drew before.
RPC_RULES: tuple[tuple[str, ...], ...] = (
    (),
    ("allow destination com.citrix.xenclient.xenmgr", "deny destination com.citrix.xenclient.xenmgr member shutdown"),
    ("allow destination com.citrix.xenclient.usbdaemon if-boolean usb-control true",),
)
PORTS = (None, "*", 22, 80, 5555)


@dataclass(repr=False)
class ManifestSet:
    """The documents of one generated set, and facts the tests look up. Its repr is
    short (the tests `note()` the YAML itself)."""

    docs: list[dict[str, Any]]
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> spec (nested devices included)
    pci: dict[str, tuple[str, bool]] = field(default_factory=dict)  # host bdf -> (VM it goes to, greedy)
    standalone: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, tuple[str, str, Any]] = field(default_factory=dict)  # name -> (kind, VM, its fields)

    def running(self) -> list[str]:
        return [name for name, spec in self.vms.items() if spec.get("state", "running") == "running"]

    def live(self) -> list[str]:
        """VMs whose domain exists after apply (running or paused)."""
        return [name for name, spec in self.vms.items() if spec.get("state", "running") != "stopped"]

    def stub_domains(self) -> list[str]:
        """The `<vm>-dm` device-model domains libxl builds with the live HVM VMs that ask for one."""
        return [f"{name}-dm" for name in self.live() if self.vms[name].get("virt") == "hvm"
                and self.vms[name].get("stubdom", {}).get("enabled")]

    def bound(self) -> set[str]:
        """Host devices that must be on pciback once converged: a live VM's, or greedy."""
        live = set(self.live())
        return {bdf for bdf, (vm, greedy) in self.pci.items() if vm in live or greedy}

    def rpc_entries(self) -> dict[str, dict[str, Any]]:
        """What rpc-proxy's policy holds once converged, by VM uuid: the live VMs' rules
        and properties (a VM with neither has no entry)."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.live():
            spec = self.vms[name]
            rules, properties = list(spec.get("rpcRules", [])), dict(spec.get("properties", {}))
            if rules or properties:
                out[spec.get("uuid") or default_vm_uuid(name)] = {"rules": rules, "properties": properties}
        return out

    def __repr__(self) -> str:
        return f"ManifestSet(vms={sorted(self.vms)}, devices={len(self.devices)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis prints dataclasses field by field
        printer.text(repr(self))

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.docs, sort_keys=False)

    def summary(self) -> str:
        """One line per VM, for a failing example's note."""
        return "\n".join(f"{name}: {yaml.safe_dump(spec, default_flow_style=True, width=10_000).strip()}"
                         for name, spec in self.vms.items())


def nested_name(kind: str, vm: str, item: Any) -> str:
    """The loader's default name for a nested item (`reconciler.loader.normalize`): what
    identifies it, not its position (the generated NICs all give their index)."""
    if kind == "Disk":
        return f"{vm}-{item['vdev']}"
    if kind == "NIC":
        return f"{vm}-nic{item['index']}"
    if kind == "PCIPassthrough":
        match = PciMatch.model_validate(item["match"]) if "match" in item else None
        return pci_rule_name(vm, str(parse_bdf(item["bdf"])) if "bdf" in item else None, match)
    rule = item if isinstance(item, str) else item["rule"]
    return v4v_rule_name(vm, v4v.canonical(rule), True if isinstance(item, str) else item.get("bidirectional", True))


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


@st.composite
def _domain(draw: Any, names: list[str], uuids: list[str]) -> str:
    kind = draw(st.sampled_from(["*", "myself", "my-stubdom", "dom-type", "dom-name", "0", "uuid"]))
    if kind == "dom-type":
        return f"dom-type={draw(st.sampled_from([*TYPES, 'ndvm']))}"
    if kind == "dom-name":
        return f"dom-name={draw(st.sampled_from(names))}"
    if kind == "uuid":
        return str(draw(st.sampled_from(uuids)))
    return str(kind)


@st.composite
def _endpoint(draw: Any, names: list[str], uuids: list[str]) -> str:
    domain = draw(_domain(names, uuids))
    port = draw(st.sampled_from(PORTS))
    return domain if port is None else f"{domain}:{port}"


@st.composite
def v4v_rules(draw: Any, names: list[str], uuids: list[str]) -> list[Any]:
    """0-3 distinct rules, as shorthand strings or `{rule, bidirectional}` mappings."""
    texts = draw(st.lists(st.builds(lambda a, b: f"{a} -> {b}", _endpoint(names, uuids), _endpoint(names, uuids)),
                          max_size=3, unique_by=v4v.canonical))  # one rule twice in a VM is an error
    out: list[Any] = []
    for text in texts:
        if draw(st.booleans()):
            out.append(text)
        else:
            out.append({"rule": text, "bidirectional": draw(st.booleans())})
    return out


@st.composite
def _disks(draw: Any, vm: str, virt: str) -> list[dict[str, Any]]:
    disks = []
    for d in range(draw(st.integers(0, 2))):
        disk: dict[str, Any] = {"vdev": ("hd" if virt == "hvm" else "xvd") + "ab"[d]}
        if draw(st.integers(0, 4)) == 0:
            disk.update(devtype="cdrom", target=f"/srv/iso/{vm}-{d}.iso")
        else:
            disk.update(target=f"/srv/img/{vm}-{d}.img", format=draw(st.sampled_from(["raw", "qcow2", "vhd"])),
                        access=draw(st.sampled_from(["rw", "ro"])), discard=draw(st.booleans()))
        raw = disk.get("format", "raw") == "raw" and "target" in disk and disk.get("devtype") != "cdrom"
        scripts = [None, *(("block", "/etc/xen/scripts/block", "/etc/xen/scripts/block-iscsi") if raw else ())]
        script = draw(st.sampled_from(scripts))
        if script:
            disk["script"] = script
        disks.append(disk)
    return disks


@st.composite
def _nics(draw: Any, vm: str, index: int, virt: str, has_net: bool) -> list[dict[str, Any]]:
    nics = []
    for n in range(draw(st.integers(0, 2))):
        nic: dict[str, Any] = {"index": n, "bridge": draw(st.sampled_from(["xenbr0", "xenbr1"]))}
        if has_net and vm != NET and draw(st.booleans()):
            nic["backendVM"] = NET
        if draw(st.booleans()):
            nic["mac"] = f"00:16:3e:00:{index:02x}:{n:02x}"
        if draw(st.booleans()):
            nic["rate"] = draw(st.sampled_from(["10Mb/s", "1MB/s@20ms"]))
        if draw(st.booleans()):
            nic["mtu"] = draw(st.sampled_from([1500, 9000]))
        if virt == "hvm" and draw(st.booleans()):
            nic.update(type="ioemu", model="e1000")
        scripts = [None, "/etc/xen/scripts/vif-route", "vif-route", "/etc/xen/scripts/vif-bridge"]
        script = draw(st.sampled_from(scripts))
        if script:
            nic["script"] = script
        if draw(st.booleans()):
            nic["promiscuous"] = True
            nic["ethtool"] = {"tso": draw(st.sampled_from(["on", "off"])), "sg": "off"}
        nics.append(nic)
    return nics


@st.composite
def _pci(draw: Any, vm: str, virt: str, state: str, free: list[int],
         claimed: dict[str, tuple[str, bool]]) -> list[dict[str, Any]]:
    """Rules over host devices not yet claimed (indexes into PCI_DEVICES, consumed; each
    rule selects exactly one device, entered in `claimed`).
    PVH guests get none: Xen 4.17 has no PCI passthrough for PVH."""
    if virt == "pvh" or not free:
        return []
    rules: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, min(2, len(free))))):
        bdf, klass, vendor, device = PCI_DEVICES[free.pop(draw(st.integers(0, len(free) - 1)))]
        claimed[bdf] = (vm, False)
        how = draw(st.sampled_from(["bdf", "class", "ids"]))
        rule: dict[str, Any] = ({"bdf": bdf} if how == "bdf" else
                                {"match": {"class": klass}} if how == "class" else
                                {"match": {"vendor": vendor, "device": device}})
        for option in ("permissive", "msitranslate", "powerMgmt"):
            if draw(st.booleans()):
                rule[option] = True
        if draw(st.booleans()):  # one device per guest slot in a VM (validate refuses two)
            taken = {r.get("guestSlot") for r in rules}
            rule["guestSlot"] = draw(st.sampled_from([f"0x{n:02x}" for n in range(2, 32) if f"0x{n:02x}" not in taken]))
        if state == "stopped" or draw(st.integers(0, 3)) == 0:
            rule["greedy"] = draw(st.booleans())
            claimed[bdf] = (vm, rule["greedy"])
        if state == "stopped" and not rule.get("greedy"):  # seize: false on a VM that runs is a user error
            rule["seize"] = draw(st.booleans())
        rules.append(rule)
    return rules


@st.composite
def _xenstore_data(draw: Any) -> dict[str, str]:
    keys = draw(st.lists(st.sampled_from(["vm-data/a", "vm-data/b", "vm-data/n/c", "vm-data/openxt/os"]),
                         max_size=3, unique=True))
    data = {key: draw(st.sampled_from(["1", "on", "windows", "x" * 200])) for key in keys}
    if draw(st.integers(0, 5)) == 0:  # issue 10 point 1: past 4096 bytes if it were one record
        data.update({f"vm-data/big/k{i}": "v" * 120 for i in range(30)})
    return data


@st.composite
def manifest_sets(draw: Any, min_vms: int = 2, max_vms: int = 6) -> ManifestSet:
    count = draw(st.integers(min_vms, max_vms))
    has_net = draw(st.booleans())
    names = ([NET] if has_net else []) + [f"vm{i}" for i in range(1, count + (0 if has_net else 1))]
    explicit = {name: f"00000000-0000-4000-8000-{i:012x}" for i, name in enumerate(names) if draw(st.booleans())}
    uuids = [explicit.get(name, default_vm_uuid(name)) for name in names]
    free = list(range(len(PCI_DEVICES)))
    out = ManifestSet(docs=[])
    for index, name in enumerate(names):
        is_net = name == NET
        virt = "pv" if is_net else draw(st.sampled_from(["pv", "pvh", "hvm"]))
        state = "running" if is_net else draw(st.sampled_from(["running", "running", "running", "paused", "stopped"]))
        spec: dict[str, Any] = {"virt": virt, "memory": draw(st.sampled_from([64, 128, 256])),
                                "type": "ndvm" if is_net else draw(st.sampled_from(TYPES)), "state": state}
        if name in explicit:
            spec["uuid"] = explicit[name]
        if virt != "hvm":
            spec["kernel"] = "/boot/vmlinuz"
        elif draw(st.booleans()):
            spec["stubdom"] = {"enabled": True}
        if is_net:
            spec.update(providesNetworkBackend=True, bootSentinel=SENTINEL)
        running_before = [n for n in names[:index] if out.vms[n]["state"] == "running"]
        if running_before and draw(st.booleans()):
            spec["dependsOn"] = draw(st.lists(st.sampled_from(running_before), min_size=1, max_size=2, unique=True))
        if draw(st.booleans()):
            spec["startPriority"] = draw(st.sampled_from([-10, 0, 10, 20]))
        data = draw(_xenstore_data())
        if data:
            spec["xenstoreData"] = data
        if RPC_RULES[index % 3]:
            spec["rpcRules"] = list(RPC_RULES[index % 3])
        if index % 2:
            spec["properties"] = {"usb-control": True}
        devices = {"disks": draw(_disks(name, virt)), "nics": draw(_nics(name, index, virt, has_net)),
                   "pci": draw(_pci(name, virt, state, free, out.pci)), "v4vRules": draw(v4v_rules(names, uuids))}
        out.vms[name] = spec
        nested = dict(spec)
        for key, items in devices.items():
            kind = {"disks": "Disk", "nics": "NIC", "pci": "PCIPassthrough", "v4vRules": "V4VRule"}[key]
            for n, item in enumerate(items):
                if draw(st.integers(0, 3)) == 0:  # the standalone form of the same device
                    body = {"rule": item} if isinstance(item, str) else dict(item)
                    device = f"{name}-{kind.lower()}{n}"
                    out.standalone.append(_doc(kind, device, {"vm": name, **body}))
                else:
                    nested.setdefault(key, [])
                    device = nested_name(kind, name, item)  # the loader's name for it
                    nested[key].append(item)
                out.devices[device] = (kind, name, item)
        out.vms[name] = {**spec, **devices}
        out.docs.append(_doc("VM", name, nested))
    out.docs.extend(out.standalone)
    return out
