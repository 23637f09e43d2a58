"""Generated manifest sets for benchmarks, in three shapes.

Not a test and not shipped: `python bench/manifests.py N DIR [--shape SHAPE]` writes
DIR/vms.yaml; `bench/plan_scale.py` imports `generate`, `inventory` and `SHAPES`.

- `basic` (issue 5's performance shape): N PV VMs, each with 2 disks, 2 NICs, 1 PCI rule
  by `bdf` (bus = index // 32 + 1, so up to 8,000 VMs never collide) and 3 v4v rules
  naming dom0 and its neighbour.
- `mixed` (issue 11, every shape the v4v grammar of reconciler/v4v.py allows): VMs come
  in groups of GROUP; each group has its own VM type `grp<i // GROUP>`, so a `dom-type=`
  rule names GROUP VMs and the host's firewall stays linear in N. Member 0 of a group is
  a network backend (`providesNetworkBackend`) that serves the second NIC of the others
  (`backendVM`); members 1.. form a `dependsOn` chain. Every VM has a uuid; rules use
  `*`, `0`, `myself`, `my-stubdom` (HVM members with a stub domain), `dom-type=`,
  `dom-name=` and uuids, bidirectional and not, with ports and `*` ports. PCI: most VMs
  by `bdf`; every 4th by a class `match` (display class 0x0300 with its own device id,
  the backends network class 0x0280, greedy), with the host devices they match in
  `inventory(n, "mixed")`.
- `domtype-all` (issue 11's quadratic shape): `basic` plus `myself -> dom-type=svm:80`
  on every VM, all of type svm. The firewall table it asks for is inherently N^2
  entries, so measure it against an empty host only (plan steps, edges and time).
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHAPES = ("basic", "mixed", "domtype-all")
GROUP = 20  # VMs per type group (mixed)
_HVM_EVERY = 5  # mixed: members 3, 8, 13, 18 of a group are HVM with a stub domain


def vm_name(i: int) -> str:
    return f"vm{i:05d}"


def vm_uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def bdf(i: int) -> str:
    return f"0000:{i // 32 + 1:02x}:{i % 32:02x}.0"


def member(i: int) -> int:
    """The position of VM i in its group (mixed)."""
    return i % GROUP


def is_backend(i: int) -> bool:
    return member(i) == 0


def is_hvm(i: int) -> bool:
    return member(i) % _HVM_EVERY == 3


def by_match(i: int) -> bool:
    """Mixed: VM i takes its PCI device by class match (backends and every 4th member)."""
    return is_backend(i) or member(i) % 4 == 2


def pci_ids(i: int, shape: str) -> tuple[str, str, str]:
    """(vendor, device, class) of the host device VM i is given."""
    if shape == "mixed" and is_backend(i):
        return "0x8086", f"0x{0x4000 + i:04x}", "0x0280"  # wireless: network, other
    if shape == "mixed" and by_match(i):
        return "0x10de", f"0x{0x1000 + i:04x}", "0x0302"  # 3D controller: display class
    return "0x8086", "0x10d3", "0x0200"


def inventory(n: int, shape: str) -> list[dict[str, str]]:
    """The host PCI functions a host of size n needs: one per VM (at bdf(i)), each bound
    to a host driver, with the ids the VM's class match selects it by."""
    rows = []
    for i in range(n):
        vendor, device, pci_class = pci_ids(i, shape)
        driver = {"0x0200": "e1000e", "0x0280": "iwlwifi"}.get(pci_class, "nouveau")
        rows.append({"bdf": bdf(i), "vendor": vendor, "device": device, "class": pci_class, "driver": driver})
    return rows


def vm_documents(i: int, n: int) -> str:
    """The basic shape."""
    name, neighbour = vm_name(i), vm_name((i + 1) % n)
    return f"""---
apiVersion: xen.reconciler/v1
kind: VM
metadata:
  name: {name}
spec:
  virt: pv
  kernel: /boot/vmlinuz-guest
  memory: 512
  maxMemory: 1024
  vcpus: 1
  maxVcpus: 2
  disks:
    - {{target: /var/lib/xen/images/{name}-root.img, vdev: xvda}}
    - {{target: /var/lib/xen/images/{name}-data.qcow2, format: qcow2, vdev: xvdb}}
  nics:
    - {{bridge: xenbr0}}
    - {{bridge: xenbr1, mtu: 9000}}
  pci:
    - {{bdf: "{bdf(i)}"}}
  v4vRules:
    - {{rule: "myself -> 0:5000"}}
    - {{rule: "myself -> dom-name={neighbour}:80"}}
    - {{rule: "0 -> myself:22", bidirectional: false}}
"""


def domtype_documents(i: int, n: int) -> str:
    return vm_documents(i, n) + '    - {rule: "myself -> dom-type=svm:80"}\n'


def mixed_documents(i: int, n: int) -> str:
    """One VM of the mixed shape; its group's backend and chain predecessor are < i."""
    name, group, pos = vm_name(i), i // GROUP, member(i)
    first = group * GROUP
    size = min(GROUP, n - first)
    neighbour = vm_name(first + (pos + 1) % size)
    other = first + (pos + 2) % size
    if is_hvm(i):
        boot = f"""  virt: hvm
  boot: c
  hvm: {{acpi: true, apic: true, viridian: {str(pos % 2 == 1).lower()}}}
  stubdom: {{enabled: true}}
  memory: 1024"""
        vdevs, nic_type = ("hda", "hdb"), ", type: ioemu, model: e1000"
    else:
        boot = """  virt: pv
  kernel: /boot/vmlinuz-guest
  cmdline: root=/dev/xvda ro console=hvc0
  memory: 512
  maxMemory: 1024"""
        vdevs, nic_type = ("xvda", "xvdb"), ""
    extra = []
    if is_backend(i):
        extra.append("  providesNetworkBackend: true")
        nics = f"    - {{bridge: xenbr0{nic_type}}}"
    else:
        nics = f"    - {{bridge: xenbr0{nic_type}}}\n    - {{bridge: xenbr1, backendVM: {vm_name(first)}, mtu: 9000{nic_type}}}"
    if pos >= 2:
        extra.append(f"  dependsOn: [{vm_name(i - 1)}]")
    vendor, device, pci_class = pci_ids(i, "mixed")
    if is_backend(i):
        pci = f'    - {{match: {{class: "{pci_class}", device: "{device}"}}, greedy: true}}'
    elif by_match(i):
        pci = f'    - {{match: {{class: "0x0300", vendor: "{vendor}", device: "{device}"}}, guestSlot: "0x05"}}'
    else:
        pci = f'    - {{bdf: "{bdf(i)}", permissive: {str(pos % 3 == 0).lower()}}}'
    rules = [
        "myself -> 0:5000",
        f"myself -> dom-name={neighbour}:80",
        "{rule: '0 -> myself:22', bidirectional: false}",
    ]
    rules.append({
        0: f"myself -> dom-type=grp{group}:8080",
        1: "{rule: 'myself -> *:53', bidirectional: false}",
        2: f"myself -> {vm_uuid(other)}:443",
        3: "myself -> 0:*",
    }[pos % 4])
    if is_backend(i):
        rules.append(f"dom-type=grp{group} -> myself:*")
        rules.append("{rule: '* -> myself:67', bidirectional: false}")
    if is_hvm(i):
        rules.append("my-stubdom -> 0:4001")
        rules.append("{rule: 'my-stubdom -> 0:*', bidirectional: false}")
    rule_lines = "\n".join(f"    - {r}" for r in rules)
    extra_lines = "".join(f"{line}\n" for line in extra)
    return f"""---
apiVersion: xen.reconciler/v1
kind: VM
metadata:
  name: {name}
  labels: {{group: grp{group}}}
spec:
  uuid: {vm_uuid(i)}
  type: grp{group}
{boot}
  vcpus: 1
  maxVcpus: 2
  startPriority: {1 if is_backend(i) else 0}
{extra_lines}  xenstoreData: {{vm-data/group: "{group}"}}
  disks:
    - {{target: /var/lib/xen/images/{name}-root.img, vdev: {vdevs[0]}}}
    - {{target: /var/lib/xen/images/{name}-data.qcow2, format: qcow2, vdev: {vdevs[1]}}}
  nics:
{nics}
  pci:
{pci}
  v4vRules:
{rule_lines}
"""


_DOCUMENTS = {"basic": vm_documents, "mixed": mixed_documents, "domtype-all": domtype_documents}


def generate(n: int, out_dir: Path, shape: str = "basic") -> Path:
    """Write the manifests for `n` VMs of `shape` into `out_dir/vms.yaml`; returns the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "vms.yaml"
    documents = _DOCUMENTS[shape]
    path.write_text("".join(documents(i, n) for i in range(n)), encoding="utf-8")
    return path


def write_inventory(state_dir: Path, n: int, shape: str = "basic") -> None:
    """DIR/pci.yaml of the simulated host: the devices `inventory(n, shape)` lists."""
    rows = [f'  - {{bdf: "{r["bdf"]}", vendor: "{r["vendor"]}", device: "{r["device"]}", '
            f'class: "{r["class"]}", driver: {r["driver"]}}}' for r in inventory(n, shape)]
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "pci.yaml").write_text("devices:\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("target", type=Path)
    parser.add_argument("--shape", choices=SHAPES, default="basic")
    args = parser.parse_args()
    print(generate(args.count, args.target, args.shape))
