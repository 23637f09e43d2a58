"""Every example VM's xl.cfg through the real `xl create -n` (Xen 4.17's xl and libxl).

The dry run parses the cfg as `xl create` does and prints libxl's domain configuration
(JSON): what libxl would build. Asserted against the manifests (`expect.py`): the
domain (name, uuid, type, memory, vCPUs, boot, lifecycle), each disk, each NIC (MAC,
bridge, model, nictype, backend, rate), each PCI function with its options and guest
slot, and the passthrough mode. libxl leaves fields at their default out of the JSON;
`_get` reads them with libxl's default. libxenctrl is answered by tests/xen/xcshim.c.
"""

from __future__ import annotations

from typing import Any

import pytest

from drivers.xl.cfg import render_cfg
from reconciler.build import build_of
from tests.xen import expect
from tests.xen.conftest import DryRun

CASES = expect.example_vms()
IDS = [f"{example}/{vm}" for example, vm in CASES]


def _get(obj: dict[str, Any], key: str, default: Any = None) -> Any:
    return obj.get(key, default)


def _dry_run(xl_dry_run: DryRun, example: str, name: str) -> tuple[expect.Manifest, dict[str, list[str]], dict[str, Any]]:
    m = expect.manifest(example, name)
    resolved = expect.made_up_addresses(m.pci)
    text, _ = render_cfg(m.vm, build_of(expect.example_state(example), name, resolved))
    return m, resolved, xl_dry_run(text)


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_domain(xl_dry_run: DryRun, example: str, name: str) -> None:
    m, _, config = _dry_run(xl_dry_run, example, name)
    want, c_info, b_info = expect.domain(m), config["c_info"], config["b_info"]
    assert (c_info["name"], c_info["uuid"], c_info["type"]) == (want["name"], want["uuid"], want["type"])
    assert _get(c_info, "ssid_label") == want["ssid_label"]
    assert (b_info["target_memkb"], b_info["max_memkb"]) == (want["target_memkb"], want["max_memkb"])
    assert (b_info["max_vcpus"], b_info["avail_vcpus"]) == (want["max_vcpus"], want["avail_vcpus"])
    for key in ("kernel", "ramdisk", "cmdline", "bootloader"):
        assert _get(b_info, key) == want[key], key
    assert _get(config, "on_poweroff", "destroy") == want["on_poweroff"]
    assert _get(config, "on_reboot", "destroy") == want["on_reboot"]
    assert _get(config, "on_crash", "destroy") == want["on_crash"]


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_disks(xl_dry_run: DryRun, example: str, name: str) -> None:
    m, _, config = _dry_run(xl_dry_run, example, name)
    got = sorted(_get(config, "disks", []), key=lambda d: d["vdev"])
    assert got == sorted((expect.disk(d) for d in m.disks), key=lambda d: d["vdev"])


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_nics(xl_dry_run: DryRun, example: str, name: str) -> None:
    m, _, config = _dry_run(xl_dry_run, example, name)
    got = sorted(_get(config, "nics", []), key=lambda n: n["devid"])
    assert got == sorted((expect.nic(n) for n in m.nics), key=lambda n: n["devid"])


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_pci_devices_and_passthrough(xl_dry_run: DryRun, example: str, name: str) -> None:
    m, resolved, config = _dry_run(xl_dry_run, example, name)
    # rdm_policy: for a PV guest xl 4.17 copies it from b_info's HVM member (e820_host
    # shares its bytes); it is libxl's business, not the manifest's, so it is left out.
    got = [{k: v for k, v in dev.items() if k != "rdm_policy"} for dev in _get(config, "pcidevs", [])]
    want = expect.pci_devices(m, resolved)
    assert got == want
    assert _get(config["c_info"], "passthrough", "default") == ("enabled" if want else "default")
    if want and m.vm.spec.virt == "pv":  # xl.cfg(5): PV guests with PCI devices get the host's e820
        assert config["b_info"]["type.pv"]["e820_host"] == "True"


def test_the_examples_cover_what_the_dry_run_checks() -> None:
    """The proof reaches each kind of device: emulated disk and NIC, cdrom, PCI with
    options and a guest slot, a PCI match rule, a NIC in a driver domain, a rate."""
    ms = [expect.manifest(example, name) for example, name in CASES]
    disks = [d.spec for m in ms for d in m.disks]
    nics = [n.spec for m in ms for n in m.nics]
    rules = [p.spec for m in ms for p in m.pci]
    assert any(d.devtype == "cdrom" for d in disks) and any(d.vdev.startswith("hd") for d in disks)
    assert any(n.type == "ioemu" and n.model for n in nics) and any(n.backend_vm for n in nics)
    assert any(n.rate for n in nics)
    assert any(r.bdf and r.guest_slot is not None for r in rules) and any(r.match for r in rules)


def test_a_cfg_xl_refuses_fails_with_its_message(xl_dry_run: DryRun) -> None:
    with pytest.raises(pytest.fail.Exception, match="no vdev specified"):
        xl_dry_run('name = "x"\ntype = "pv"\nkernel = "/k"\ndisk = [ "target=/dev/vg/x, vdev=xvda" ]\n')


HVM = [(example, name) for example, name in CASES if expect.manifest(example, name).vm.spec.virt == "hvm"]


@pytest.mark.parametrize(("example", "name"), HVM, ids=[f"{e}/{n}" for e, n in HVM])
def test_hvm_boot_display_and_stub_domain(xl_dry_run: DryRun, example: str, name: str) -> None:
    m, _, config = _dry_run(xl_dry_run, example, name)
    spec, b_info = m.vm.spec, config["b_info"]
    hvm = b_info["type.hvm"]
    assert hvm["boot"] == (spec.boot or "cd")
    assert _get(hvm["vnc"], "enable") == ("True" if spec.display.type == "vnc" else "False")
    stubdom = spec.stubdom is not None and spec.stubdom.enabled
    assert _get(b_info, "device_model_stubdomain", "<default>") == ("True" if stubdom else "<default>")
    if stubdom:
        assert spec.stubdom is not None and b_info["stubdomain_memkb"] == spec.stubdom.memory * 1024
