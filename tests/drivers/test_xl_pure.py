"""The xl driver's pure parts: xl.cfg text, device spec tokens, `xl list -v` rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from drivers.xl import disk_spec, parse_list_verbose, pci_spec, power_from_state, render_cfg, vif_spec
from reconciler.build import build_of
from reconciler.errors import TerminalHostError
from reconciler.model.common import default_vm_uuid
from reconciler.model.host import Build, PciAssignment

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.model import DesiredState

HVM = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: win10}
spec:
  virt: hvm
  uuid: 0B7C1A52-3C1E-4D6A-9F5E-2F0E8B1D7C44
  memory: 4Gi
  maxMemory: 6Gi
  vcpus: 2
  maxVcpus: 4
  boot: dc
  hvm: {pae: true, acpi: true, viridian: false, timerMode: no_delay_for_missed_ticks, videoram: 16}
  display: {type: vnc, vncListen: 0.0.0.0, vncPassword: 's3"cr\\et'}
  serial: pty
  stubdom: {enabled: true}
  flaskLabel: system_u:system_r:hvm_guest_t
  lifecycle: {onCrash: preserve, onReboot: rename-restart}
"""

PASSWORD = "vncPassword: 's3\"cr\\et'"
assert PASSWORD in HVM

PV = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: mail}
spec:
  virt: pvh
  memory: 512
  kernel: /boot/vmlinuz
  ramdisk: /boot/initrd.img
  cmdline: "root=/dev/xvda1 ro console=hvc0"
  display: {type: vnc, vncPassword: hunter2}
  disks:
    - {target: /dev/vg0/mail, vdev: xvda}
    - {target: "/srv/iso/a,b.iso", vdev: xvdc, devtype: cdrom, format: raw, backendVM: stor, discard: false, script: block-iscsi}
  nics:
    - {bridge: xenbr1, mtu: 9000, rate: 10Mb/s, ip: 10.0.0.5 10.0.0.6, vifname: vif-mail}
    - {backendVM: ndvm, mac: "00:16:3e:aa:bb:cc", type: vif}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: ndvm}
spec: {virt: pv, memory: 256, kernel: /boot/vmlinuz, providesNetworkBackend: true}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: stor}
spec: {virt: pv, memory: 256, bootloader: pygrub}
"""


def test_hvm_cfg_maps_every_field(load_state: Callable[[str], DesiredState]) -> None:
    text, secrets = render_cfg(load_state(HVM).vms["win10"])
    assert text.splitlines()[1:] == [
        'name = "win10"',
        'uuid = "0b7c1a52-3c1e-4d6a-9f5e-2f0e8b1d7c44"',
        'type = "hvm"',
        "memory = 4096",
        "maxmem = 6144",
        "vcpus = 2",
        "maxvcpus = 4",
        'seclabel = "system_u:system_r:hvm_guest_t"',
        'on_poweroff = "destroy"',
        'on_reboot = "rename-restart"',
        'on_crash = "preserve"',
        'boot = "dc"',
        "pae = 1",
        "acpi = 1",
        "viridian = 0",
        'timer_mode = "no_delay_for_missed_ticks"',
        "videoram = 16",
        'serial = "pty"',
        "device_model_stubdomain_override = 1",
        "stubdomain_memory = 96",
        "vnc = 1",
        "sdl = 0",
        'vnclisten = "0.0.0.0"',
        'vncpasswd = "s3\\"cr\\\\et"',  # libxlu dequotes \" and \\
    ]
    assert text.startswith("# xl.cfg for VM win10")
    assert secrets == {'s3"cr\\et'}


def test_pv_cfg_defaults_uuid_and_uses_a_pv_framebuffer(load_state: Callable[[str], DesiredState]) -> None:
    text, secrets = render_cfg(load_state(PV).vms["mail"])
    lines = text.splitlines()
    assert f'uuid = "{default_vm_uuid("mail")}"' in lines
    assert 'type = "pvh"' in lines and "maxmem = 512" in lines and "maxvcpus = 1" in lines
    assert 'cmdline = "root=/dev/xvda1 ro console=hvc0"' in lines
    assert lines[-1] == 'vfb = [ "vnc=1,vnclisten=127.0.0.1,vncpasswd=hunter2" ]'
    assert not any(line.startswith(("vnc =", "boot =", "serial =")) for line in lines)
    assert secrets == {"hunter2"}


def test_hvm_without_display_turns_vnc_off(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(HVM.replace(f"display: {{type: vnc, vncListen: 0.0.0.0, {PASSWORD}}}", "display: {}"))
    text, secrets = render_cfg(state.vms["win10"])
    assert "vnc = 0" in text.splitlines() and "vncpasswd" not in text and secrets == frozenset()


def test_pv_password_with_spec_separator_is_refused_without_showing_it(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(PV.replace("vncPassword: hunter2", "vncPassword: 'a,b=c'"))
    with pytest.raises(TerminalHostError, match="cannot contain ','") as info:
        render_cfg(state.vms["mail"])
    assert "a,b=c" not in str(info.value)


def test_control_characters_are_refused_and_secrets_stay_hidden(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(HVM.replace(PASSWORD, 'vncPassword: "pw\\nnext"'))
    with pytest.raises(TerminalHostError, match=r"vncpasswd: value \(sensitive\) holds control") as info:
        render_cfg(state.vms["win10"])
    assert "pw" not in str(info.value).replace("vncpasswd", "")


def test_disk_specs(load_state: Callable[[str], DesiredState]) -> None:
    disks = load_state(PV).disks
    assert disk_spec(disks["mail-xvda"]) == [
        "format=raw", "vdev=xvda", "access=rw", "discard", "target=/dev/vg0/mail"]
    assert disk_spec(disks["mail-xvdc"]) == [
        "format=raw", "vdev=xvdc", "access=ro", "devtype=cdrom", "backend=stor",
        "script=/etc/xen/scripts/block-iscsi", "no-discard", "target=/srv/iso/a,b.iso"]


def test_vif_specs(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(PV)
    first = vif_spec(state.nics["mail-nic0"])
    assert first[0] == "devid=0" and first[1].startswith("mac=") and first[1] != "mac=auto"
    assert first[2:] == ["bridge=xenbr1", "vifname=vif-mail", "rate=10Mb/s", "ip=10.0.0.5 10.0.0.6", "mtu=9000"]
    assert vif_spec(state.nics["mail-nic1"]) == [
        "devid=1", "mac=00:16:3e:aa:bb:cc", "bridge=xenbr0", "backend=ndvm", "type=vif", "mtu=1500"]


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, "0000:03:00.0"),
    ({"guest_slot": 5}, "0000:03:00.0@05"),
    ({"permissive": True, "msitranslate": True, "power_mgmt": True, "guest_slot": 0x1F},
     "0000:03:00.0@1f,permissive=1,msitranslate=1,power_mgmt=1"),
])
def test_pci_spec(kwargs: dict[str, object], expected: str) -> None:
    assert pci_spec("03:00.0", **kwargs) == expected  # type: ignore[arg-type]


def test_pci_spec_refuses_bad_input() -> None:
    with pytest.raises(TerminalHostError, match="PCI address"):
        pci_spec("3:0")
    with pytest.raises(TerminalHostError, match="0x00-0x1f"):
        pci_spec("0000:03:00.0", guest_slot=0x20)


LIST_V = """\
Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label
Domain-0                                     0  2048     4     r-----     812.3 00000000-0000-0000-0000-000000000000        -                -
ndvm                                         1   256     1     -b----      40.1 5C0C0C2E-96D2-4B41-B1B3-8C5A0F3E7A10        -                -
uivm                                         3   512     2     --p---       0.0 8a4f3f1c-0f0b-4c55-9d0a-6a3b2c1d0e9f        -                -
a very long domain name with spaces that pushes columns  12  1024     1     ---sc-       3.2 11111111-2222-3333-4444-555555555555        3 system_u:system_r:domU_t
gone                                         7     0     0     ---s-d       1.0 22222222-3333-4444-5555-666666666666        0                -
"""


def test_list_verbose_rows() -> None:
    rows = parse_list_verbose(LIST_V)
    assert [(d.domid, d.name, d.power, d.memory_mib, d.vcpus) for d in rows] == [
        (1, "ndvm", "running", 256, 1),
        (3, "uivm", "paused", 512, 2),
        (7, "gone", "dying", 0, 0),
        (12, "a very long domain name with spaces that pushes columns", "crashed", 1024, 1),
    ]
    assert rows[0].uuid == "5c0c0c2e-96d2-4b41-b1b3-8c5a0f3e7a10"


@pytest.mark.parametrize(("state", "power"), [
    ("r-----", "running"), ("-b----", "running"), ("------", "running"), ("--p---", "paused"),
    ("---s--", "shutdown"), ("---sr-", "rebooted"), ("---ss-", "shutdown"), ("---sc-", "crashed"), ("--psc-", "crashed"),
    ("-b---d", "dying"), ("---scd", "dying"),
])
def test_power_from_state(state: str, power: str) -> None:
    assert power_from_state(state) == power


def test_unreadable_list_line_names_itself() -> None:
    with pytest.raises(TerminalHostError, match=r"line 2 of `xl list -v`: 'ndvm 1 256'"):
        parse_list_verbose("Name   ID\nndvm 1 256\n")


# ---- devices in the cfg: the domain is built as xl builds it (DESIGN section 5) --------

HVM_DEVICES = HVM.replace("  lifecycle:", """  disks:
    - {target: /dev/vg0/win10, vdev: hda}
    - {target: /srv/iso/win10.iso, vdev: hdc, devtype: cdrom}
    - {target: "/srv/img/d,1.qcow2", vdev: xvdb, format: qcow2, access: ro, discard: false}
  nics:
    - {type: ioemu, model: e1000, mac: "00:16:3e:01:02:03", bridge: xenbr1}
    - {mac: "00:16:3e:01:02:04", backendVM: ndvm, rate: 10Mb/s, ip: 10.0.0.5 10.0.0.6, script: vif-route, mtu: 9000}
  pci:
    - {bdf: "0000:00:1f.6", guestSlot: 5, permissive: true}
    - {bdf: "0000:00:02.0", msitranslate: true, powerMgmt: true}
  lifecycle:""") + """---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: ndvm}
spec: {virt: pv, memory: 256, kernel: /boot/vmlinuz, providesNetworkBackend: true}
"""


def test_hvm_cfg_holds_its_disks_nics_and_pci_devices(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(HVM_DEVICES)
    text, secrets = render_cfg(state.vms["win10"], build_of(state, "win10"))
    assert text.splitlines()[-4:] == [
        'disk = [ "format=raw, vdev=hda, access=rw, discard, target=/dev/vg0/win10", '
        '"format=raw, vdev=hdc, access=ro, devtype=cdrom, discard, target=/srv/iso/win10.iso", '
        '"format=qcow2, vdev=xvdb, access=ro, no-discard, target=/srv/img/d,1.qcow2" ]',
        'vif = [ "devid=0, mac=00:16:3e:01:02:03, bridge=xenbr1, type=ioemu, model=e1000, mtu=1500", '
        '"devid=1, mac=00:16:3e:01:02:04, bridge=xenbr0, backend=ndvm, rate=10Mb/s, ip=10.0.0.5 10.0.0.6, '
        'script=/etc/xen/scripts/vif-route, mtu=9000" ]',
        'pci = [ "0000:00:02.0,msitranslate=1,power_mgmt=1", "0000:00:1f.6@05,permissive=1" ]',
        'passthrough = "enabled"',
    ]
    assert secrets == {'s3"cr\\et'}


def test_pv_cfg_disks_keep_target_last_and_nics_resolved(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(PV)
    text, _ = render_cfg(state.vms["mail"], build_of(state, "mail"))
    lines = text.splitlines()
    mac = vif_spec(state.nics["mail-nic0"])[1]
    assert lines[-2:] == [
        'disk = [ "format=raw, vdev=xvda, access=rw, discard, target=/dev/vg0/mail", '
        '"format=raw, vdev=xvdc, access=ro, devtype=cdrom, backend=stor, script=/etc/xen/scripts/block-iscsi, '
        'no-discard, target=/srv/iso/a,b.iso" ]',
        f'vif = [ "devid=0, {mac}, bridge=xenbr1, vifname=vif-mail, rate=10Mb/s, ip=10.0.0.5 10.0.0.6, mtu=9000", '
        '"devid=1, mac=00:16:3e:aa:bb:cc, bridge=xenbr0, backend=ndvm, type=vif, mtu=1500" ]',
    ]
    assert not any(line.startswith(("pci =", "passthrough =")) for line in lines)


def test_cfg_without_a_build_has_no_device_lines(load_state: Callable[[str], DesiredState]) -> None:
    text, _ = render_cfg(load_state(PV).vms["mail"])
    assert not any(line.startswith(("disk =", "vif =", "pci =")) for line in text.splitlines())


def test_build_of_takes_match_rules_from_the_resolved_addresses(load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(HVM_DEVICES.replace('{bdf: "0000:00:02.0", msitranslate: true, powerMgmt: true}',
                                           "{name: gpu, match: {class: 0x0300}, msitranslate: true}"))
    rules = {name: rule for name, rule in state.pci.items() if rule.spec.match is not None}
    assert list(rules) == ["gpu"]
    assert [p.bdf for p in build_of(state, "win10").pci] == ["0000:00:1f.6"]  # unresolved match: left out
    build = build_of(state, "win10", {"gpu": ["0000:01:00.0", "00:02.0"]})
    assert build.pci == (PciAssignment("0000:00:02.0", msitranslate=True),
                         PciAssignment("0000:00:1f.6", permissive=True, guest_slot=5),
                         PciAssignment("0000:01:00.0", msitranslate=True))
    assert [d.spec.vdev for d in build.disks] == ["hda", "hdc", "xvdb"]  # by devid: 768, 5632, 51728
    assert build_of(state, "ndvm") == Build()


def test_the_openxt_win10_cfg_holds_its_cdrom_emulated_nic_and_gpu() -> None:
    # The example's HVM guest, as `xl create` must get it: the install CD on hdc (the BIOS
    # sees it only when built in), the e1000 emulated by QEMU, the GPU passed through.
    from reconciler.loader import load

    state = load(["examples/openxt-desktop"]).state
    assert state is not None
    text, _ = render_cfg(state.vms["win10"], build_of(state, "win10"))
    entries = dict(line.split(" = ", 1) for line in text.splitlines()[1:])
    mac = state.nics["win10-wired"].spec.mac
    assert entries["disk"] == (
        '[ "format=vhd, vdev=hda, access=rw, discard, target=/storage/disks/win10.vhd", '
        '"format=vhd, vdev=hdb, access=rw, discard, target=/storage/disks/win10-data.vhd", '
        '"format=raw, vdev=hdc, access=ro, devtype=cdrom, discard, target=/storage/isos/win10.iso" ]')
    assert entries["vif"] == f'[ "devid=0, mac={mac}, bridge=xenbr0, backend=ndvm, type=ioemu, model=e1000, mtu=1500" ]'
    assert entries["pci"] == '[ "0000:00:02.0@02,power_mgmt=1" ]' and entries["passthrough"] == '"enabled"'
    assert entries["type"] == '"hvm"'
