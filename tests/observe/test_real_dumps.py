"""The observer on three real hosts' xenstore dumps: what each one shows."""

from __future__ import annotations

from reconciler.model import NIC, VM, Disk, PCIPassthrough
from reconciler.model.observed import DeviceHealth, DomainInfo, ObservedState


def test_hvm_2019_domain_and_vm(hvm: ObservedState) -> None:
    assert hvm.domains == {
        "guest_centos7": DomainInfo(
            "guest_centos7", 37, "9a6857f8-05a0-4c8d-92c3-1ea04bc28c32", "running", False, None
        )
    }
    vm = hvm.vms["guest_centos7"]
    assert isinstance(vm, VM) and list(hvm.vms) == ["guest_centos7"]
    assert vm.spec.virt == "hvm"
    assert vm.spec.uuid == "9a6857f8-05a0-4c8d-92c3-1ea04bc28c32"
    # target 16760832 + videoram 16384 KiB = static-max 16777216 KiB
    assert (vm.spec.memory, vm.spec.max_memory) == (16384, 16384)
    assert (vm.spec.vcpus, vm.spec.max_vcpus) == (4, 4)
    assert vm.spec.kernel is None  # HVM: libxl writes no image/kernel


def test_hvm_2019_qdisk_and_vif(hvm: ObservedState) -> None:
    assert list(hvm.disks) == ["guest_centos7-disk-51712"]  # dom0's own qdisk is not a VM's
    disk = hvm.disks["guest_centos7-disk-51712"]
    assert isinstance(disk, Disk)
    s = disk.spec
    assert (s.vm, s.target, s.format, s.vdev, s.access, s.devtype, s.discard) == (
        "guest_centos7", "/home/nervalusr/chao/centos.qcow2", "qcow2", "xvda", "rw", "disk", True
    )
    assert s.backend_vm is None and s.script is None
    nic = hvm.nics["guest_centos7-nic-0"]
    assert isinstance(nic, NIC)
    n = nic.spec
    assert (n.index, n.mac, n.bridge, n.type, n.mtu, n.rate, n.script) == (
        0, "22:16:3e:00:9f:a7", "xenbr0", "ioemu", 1500, None, None
    )
    assert hvm.health == {
        "guest_centos7-disk-51712": DeviceHealth("connected"),
        "guest_centos7-nic-0": DeviceHealth("connected"),
    }
    assert hvm.pci == {}
    assert hvm.pci_assignable == ("0000:88:00.0",)  # old /libxl/pciback, no domid


def test_hvm_2019_underscore_name_is_reported_not_dropped(hvm: ObservedState) -> None:
    # libxl allows `guest_centos7`; manifest names do not. The models are kept
    # (built unvalidated) so the diff can still see them, and each says why.
    assert hvm.problems == (
        "domain 37 is named 'guest_centos7', not a manifest name (a name of 1-63 lower-case "
        "letters, digits and '-', starting and ending with a letter or digit); its VM and "
        "devices are kept unvalidated and no manifest can match them",
    )
    assert hvm.vms["guest_centos7"].metadata.name == "guest_centos7"
    assert hvm.nics["guest_centos7-nic-0"].spec.vm == "guest_centos7"


def test_rpi4_2022_pvh_phy(rpi4: ObservedState) -> None:
    assert list(rpi4.domains) == ["guest2"]
    info = rpi4.domains["guest2"]
    assert (info.domid, info.uuid, info.power, info.managed) == (
        1, "d81ec5a9-5bf9-4f2b-89e8-0f60d6da948f", "running", False
    )
    vm = rpi4.vms["guest2"].spec
    assert (vm.virt, vm.memory, vm.max_memory, vm.vcpus, vm.max_vcpus) == ("pvh", 2048, 2048, 2, 2)
    disk = rpi4.disks["guest2-disk-51712"].spec
    assert (disk.format, disk.target, disk.vdev, disk.access) == (
        "raw", "/home/root/guest2/xen-guest-image-minimal-raspberrypi4-64.ext3", "xvda", "rw"
    )
    assert disk.script is None  # libxl's default block script
    nic = rpi4.nics["guest2-nic-0"].spec
    assert (nic.mac, nic.bridge, nic.type, nic.mtu) == ("e4:5f:01:cd:7b:dd", "xenbr0", "vif", 1500)
    assert rpi4.health == {
        "guest2-disk-51712": DeviceHealth("connected"),
        "guest2-nic-0": DeviceHealth("connected"),
    }
    assert rpi4.problems == () and rpi4.pci_assignable == ()


def test_pci_2021_grep_dump_partial(pci: ObservedState) -> None:
    # Only `grep pci` lines: the domain has no name, vm, memory or type nodes.
    assert list(pci.domains) == ["DomU"]  # the name from the pci backend's `domain` node
    assert pci.domains["DomU"].domid == 2 and pci.domains["DomU"].uuid is None
    assert pci.vms == {} and pci.disks == {} and pci.nics == {}
    dev = pci.pci["DomU-pci-0"]
    assert isinstance(dev, PCIPassthrough)
    assert (dev.spec.bdf, dev.spec.permissive, dev.spec.msitranslate, dev.spec.power_mgmt) == (
        "0000:03:00.0", False, False, False
    )
    assert dev.spec.guest_slot is None
    assert pci.health == {"DomU-pci-0": DeviceHealth("initialising", "backend state 1 (Initialising)")}
    assert pci.pci_assignable == ()  # /libxl/pci/0000-03-00-0 has domid 2: assigned
    assert pci.problems[0] == "/local/domain/2/name is missing (partial dump?); calling the domain 'DomU'"
    assert pci.problems[1].startswith("domain 2 is named 'DomU', not a manifest name")
    assert pci.problems[2:] == (
        "/local/domain/2/vm is missing: it names /vm/<uuid>, the domain's identity",
        "/local/domain/2/memory/static-max is missing: maximum memory in KiB",
        "domain 2 ('DomU'): no readable memory, so no VM model",
    )
