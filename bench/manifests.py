"""Generated manifest sets for benchmarks: N VMs, each with 2 disks, 2 NICs, 1 PCI rule
and 3 v4v rules (issue 5's performance shape).

Not a test and not shipped: `python bench/manifests.py N DIR` writes DIR/vms.yaml;
`bench/plan_scale.py` imports `generate`. Every VM is PV with a kernel, its PCI rule
names its own BDF (bus = index // 32 + 1, so up to 8,000 VMs never collide) and its
v4v rules name dom0 and its neighbour, so the firewall grows linearly, not n^2.
"""

from __future__ import annotations

import sys
from pathlib import Path


def vm_name(i: int) -> str:
    return f"vm{i:05d}"


def bdf(i: int) -> str:
    return f"0000:{i // 32 + 1:02x}:{i % 32:02x}.0"


def vm_documents(i: int, n: int) -> str:
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


def generate(n: int, out_dir: Path) -> Path:
    """Write the manifests for `n` VMs into `out_dir/vms.yaml`; returns the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "vms.yaml"
    path.write_text("".join(vm_documents(i, n) for i in range(n)), encoding="utf-8")
    return path


if __name__ == "__main__":
    count, target = int(sys.argv[1]), Path(sys.argv[2])
    print(generate(count, target))
