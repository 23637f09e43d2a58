"""Every example VM's xl.cfg read by Xen's own libxlutil (ctypes), devices included.

The cfg is what `xl create` gets (`drivers.xl.cfg.render_cfg` of the VM's `build_of`);
libxlutil must read it without a message, hand back each key the manifest sets, and its
disk and PCI parsers (the ones xl runs on each `disk=`/`pci=` item) must turn each item
into the device the manifest describes (`expect.py`).
"""

from __future__ import annotations

import pytest

from drivers.xl.cfg import render_cfg
from reconciler.build import build_of
from tests.xen import expect, xlutil

CASES = expect.example_vms()
IDS = [f"{example}/{vm}" for example, vm in CASES]


def _cfg(example: str, name: str) -> tuple[expect.Manifest, dict[str, list[str]], str]:
    m = expect.manifest(example, name)
    resolved = expect.made_up_addresses(m.pci)
    text, _ = render_cfg(m.vm, build_of(expect.example_state(example), name, resolved))
    return m, resolved, text


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_domain_keys_read_back(example: str, name: str) -> None:
    m, _, text = _cfg(example, name)
    want = expect.domain(m)
    with xlutil.parse(text, f"{name}.cfg") as cfg:
        assert cfg.string("name") == want["name"]
        assert cfg.string("uuid") == want["uuid"]
        assert cfg.string("type") == want["type"]
        assert cfg.long("memory") == want["target_memkb"] // 1024
        assert cfg.long("maxmem") == want["max_memkb"] // 1024
        assert cfg.long("vcpus") == len(want["avail_vcpus"])
        assert cfg.long("maxvcpus") == want["max_vcpus"]
        for key in ("kernel", "ramdisk", "cmdline", "bootloader"):
            assert cfg.string(key) == want[key], key


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_disks_parse_with_xlu_disk_parse(example: str, name: str) -> None:
    m, _, text = _cfg(example, name)
    with xlutil.parse(text, f"{name}.cfg") as cfg:
        parsed = [cfg.disk(item) for item in cfg.items("disk")]
    assert sorted(parsed, key=lambda d: d["vdev"]) == sorted((expect.disk(d) for d in m.disks), key=lambda d: d["vdev"])


@pytest.mark.parametrize(("example", "name"), CASES, ids=IDS)
def test_pci_items_parse_with_xlu_pci_parse_spec_string(example: str, name: str) -> None:
    m, resolved, text = _cfg(example, name)
    with xlutil.parse(text, f"{name}.cfg") as cfg:
        parsed = [cfg.pci(item) for item in cfg.items("pci")]
        passthrough = cfg.string("passthrough")
    assert parsed == expect.pci_devices(m, resolved)
    assert passthrough == ("enabled" if parsed else None)


def test_every_example_vm_is_a_case() -> None:
    assert len(CASES) >= 10 and {example for example, _ in CASES} == {"openxt-desktop", "server-host"}


def test_a_cfg_libxlutil_refuses_is_reported_with_its_message() -> None:
    with pytest.raises(xlutil.CfgError, match=r"bad\.cfg:2: config parsing error"):
        with xlutil.parse('name = "a"\nmemory = = 5\n', "bad.cfg"):
            pass


def test_a_target_before_other_keys_is_refused_by_xlu_disk_parse() -> None:
    """Why render_cfg puts `target=` last: libxlutil lets it swallow the rest."""
    with xlutil.parse('disk = [ "target=/dev/vg/x, vdev=xvda" ]\n') as cfg:
        with pytest.raises(AssertionError, match="no vdev specified"):
            cfg.disk(cfg.items("disk")[0])
