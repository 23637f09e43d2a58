"""The simulated toolstack's xenstore layout against real dumps from xen-devel.

Real: the three dumps in tests/data/xenstore-dumps (read with the dump importer).
Faked: `play` is a ten-line dict xenstore that applies the Op lists.
Keys that the guest, QEMU or a backend driver writes are not modelled by `layout`
and are listed below with the reason; everything else must match the dumps.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from drivers.dump import DumpResult, load_dump
from drivers.sim.layout import (
    Op,
    PciOpts,
    backend_progress,
    build_post,
    console_add,
    device_destroy,
    device_remove,
    domain_skeleton,
    pci_backend,
    vbd_add,
    vif_add,
)
from reconciler.xenfmt import parse_bdf, vdev_to_devid

DUMPS = Path(__file__).resolve().parents[1] / "data" / "xenstore-dumps"
Tree = dict[str, str]
Perms = dict[str, tuple[str, ...]]

# Written by the guest's drivers, QEMU or backend drivers after connecting: not modelled.
NOT_MODELLED = {
    "ring-ref", "event-channel", "protocol", "feature-persistent", "multi-queue-num-queues",
    "queue-0", "queue-1", "queue-2", "queue-3", "request-rx-copy", "feature-rx-notify",
    "feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload",
    "xdp-headroom", "feature-flush-cache", "feature-discard", "discard-granularity",
    "discard-alignment", "discard-secure", "feature-barrier", "feature-max-indirect-segments",
    "multi-queue-max-queues", "max-ring-page-order", "info", "sector-size", "sectors",
    "physical-sector-size", "feature-rx-copy", "feature-rx-flip", "feature-multicast-control",
    "feature-dynamic-multicast-control", "feature-split-event-channels", "feature-ctrl-ring",
    "feature-xdp-headroom",
    "hvmloader/bios", "hvmloader/allow-memory-relocate",  # libxl's HVM builder, not build_post
    "image", "serial",  # QEMU's pid and serial tty
    "vkbd", "vfb", "vusb",  # device kinds layout does not generate
}
# Written by the libxl the reference follows (4.17) but not by the older ones in the dumps.
NEWER_LIBXL = {"trusted", "mtu", "hotplug-status", "error"}


def play(ops: Iterable[Op], tree: Tree | None = None) -> tuple[Tree, Perms]:
    nodes: Tree = dict(tree or {})
    perms: Perms = {}

    def ensure(path: str) -> None:
        parts = path.split("/")
        for i in range(2, len(parts) + 1):  # parents first, as xenstored creates them
            nodes.setdefault("/".join(parts[:i]), "")

    for op in ops:
        if op.kind in ("write", "mkdir"):
            ensure(op.path)
            if op.kind == "write":
                nodes[op.path] = op.value
        elif op.kind == "set_perms":
            assert op.path in nodes, f"set_perms on missing {op.path}"
            perms[op.path] = op.perms
        else:
            for p in [p for p in nodes if p == op.path or p.startswith(op.path + "/")]:
                del nodes[p]
            parent = op.path.rpartition("/")[0]
            while op.kind == "rm_tidy" and parent and nodes.get(parent) == "" and not any(
                p.startswith(parent + "/") for p in nodes
            ):
                del nodes[parent]
                parent = parent.rpartition("/")[0]
    return nodes, perms


def children(nodes: Iterable[str], path: str) -> set[str]:
    return {p[len(path) + 1 :] for p in nodes if p.rpartition("/")[0] == path}


def compare_subtree(made: Tree, real: Tree, root: str, host_specific: set[str]) -> None:
    """Same children per node (minus the documented sets) and same values under `root`."""
    assert root in made and root in real, root
    for path in [p for p in real if p == root or p.startswith(root + "/")]:
        rel = path[len(root) + 1 :]
        if any(part in NOT_MODELLED for part in rel.split("/")) or rel in NOT_MODELLED:
            continue
        assert path in made, f"layout lacks {path}"
        ignored = NOT_MODELLED | NEWER_LIBXL
        want = {c for c in children(real, path) if c not in ignored and f"{rel}/{c}" not in ignored}
        got = {c for c in children(made, path) if c not in ignored and f"{rel}/{c}" not in ignored}
        assert got == want, path
        if path not in host_specific and not children(real, path):
            assert made[path] == real[path], path


def _progress(domid: int, kinds: list[tuple[str, int, str]]) -> list[Op]:
    ops: list[Op] = []
    for kind, devid, backend_kind in kinds:
        for step in backend_progress("add", domid, kind, devid, backend_kind=backend_kind):
            ops += step.ops
    return ops


@pytest.fixture(scope="module")
def hvm_real() -> DumpResult:
    return load_dump(str(DUMPS / "xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"))


@pytest.fixture(scope="module")
def hvm_made() -> tuple[Tree, Perms]:
    uuid, d = "9a6857f8-05a0-4c8d-92c3-1ea04bc28c32", 37
    ops = domain_skeleton(d, "guest_centos7", uuid, "hvm")
    ops += build_post(d, uuid, "hvm", max_memkb=16777216, target_memkb=16777216, videoram_kb=16384,
                      max_vcpus=4, online_vcpus=4, start_time=1561550075.84)
    ops += vbd_add(d, vdev_to_devid("xvda"), target="/home/nervalusr/chao/centos.qcow2",
                   vdev="xvda", virt="hvm", disk_format="qcow2")
    ops += vif_add(d, 0, mac="22:16:3e:00:9f:a7", virt="hvm")
    ops += console_add(d, port=2, ring_ref=1044479, vnc=("127.0.0.1", 5900))
    ops += _progress(d, [("vbd", 51712, "qdisk"), ("vif", 0, "vif"), ("console", 0, "console")])
    return play(ops)


@pytest.mark.parametrize(
    "root",
    ["/local/domain/37", "/vm/9a6857f8-05a0-4c8d-92c3-1ea04bc28c32", "/libxl/37",
     "/local/domain/0/backend/qdisk/37", "/local/domain/0/backend/vif/37",
     "/local/domain/0/backend/console/37"],
)
def test_hvm_qdisk_layout_matches_2019_dump(
    root: str, hvm_made: tuple[Tree, Perms], hvm_real: DumpResult
) -> None:
    host_specific = {"/local/domain/37/console/tty"}
    compare_subtree(hvm_made[0], hvm_real.nodes, root, host_specific)


def test_hvm_values_that_matter(hvm_made: tuple[Tree, Perms]) -> None:
    nodes = hvm_made[0]
    be = "/local/domain/0/backend/qdisk/37/51712"
    assert nodes[f"{be}/params"] == "qcow2:/home/nervalusr/chao/centos.qcow2"
    assert nodes[f"{be}/state"] == "4" and nodes["/libxl/37/device/vbd/51712/state"] == "1"
    assert nodes["/local/domain/37/memory/target"] == "16760832"
    assert nodes["/local/domain/0/backend/vif/37/0/type"] == "vif_ioemu"
    assert nodes["/local/domain/0/backend/console/37/0/state"] == "1"
    assert nodes["/local/domain/0/backend/console/37/0/protocol"] == "vt100"


@pytest.fixture(scope="module")
def rpi4_real() -> DumpResult:
    return load_dump(str(DUMPS / "xen-devel-2022-11-rpi4-pvh-phy-xenstore-ls.txt"))


@pytest.fixture(scope="module")
def pvh_made() -> tuple[Tree, Perms]:
    uuid, d = "d81ec5a9-5bf9-4f2b-89e8-0f60d6da948f", 1
    ops = domain_skeleton(d, "guest2", uuid, "pvh")
    ops += build_post(d, uuid, "pvh", max_memkb=2097152, target_memkb=2097152, videoram_kb=0,
                      max_vcpus=2, online_vcpus=2, start_time=1520600274.27, store_ring_ref=233473)
    image = "/home/root/guest2/xen-guest-image-minimal-raspberrypi4-64.ext3"
    ops += vbd_add(d, 51712, target=image, vdev="xvda", virt="pvh")
    ops += vif_add(d, 0, mac="e4:5f:01:cd:7b:dd", virt="pvh")
    ops += console_add(d, port=2, ring_ref=233472, vnc=("127.0.0.1", 5900))
    ops += _progress(d, [("vbd", 51712, "vbd"), ("vif", 0, "vif"), ("console", 0, "console")])
    return play(ops)


@pytest.mark.parametrize(
    "root",
    ["/local/domain/1", "/vm/d81ec5a9-5bf9-4f2b-89e8-0f60d6da948f", "/libxl/1",
     "/local/domain/0/backend/vbd/1", "/local/domain/0/backend/vif/1",
     "/local/domain/0/backend/console/1"],
)
def test_pvh_phy_layout_matches_rpi4_dump(
    root: str, pvh_made: tuple[Tree, Perms], rpi4_real: DumpResult
) -> None:
    # The guest's PV drivers wrote "1" into the features it supports.
    control = "/local/domain/1/control"
    host_specific = {"/local/domain/1/console/tty", f"{control}/feature-poweroff",
                     f"{control}/feature-reboot"}
    compare_subtree(pvh_made[0], rpi4_real.nodes, root, host_specific)


def test_pvh_phy_disk_goes_through_the_block_script(pvh_made: tuple[Tree, Perms]) -> None:
    be = "/local/domain/0/backend/vbd/1/51712"
    nodes = pvh_made[0]
    assert nodes[f"{be}/script"] == "/etc/xen/scripts/block"
    assert nodes[f"{be}/type"] == "phy"
    assert (nodes[f"{be}/node"], nodes[f"{be}/physical-device"]) == ("/dev/loop0", "7:0")
    assert "/vm/d81ec5a9-5bf9-4f2b-89e8-0f60d6da948f/image" not in nodes  # PVH: no image


def test_permissions_as_a_real_fp_dump_shows_them() -> None:
    # A 2022 xen-devel `xenstore-ls -fp` of domU 2 with its vif backend in domain 1:
    # device (n0,r2), suspend/event-channel (n2), control/shutdown (n2),
    # device/vif/0 (n2,r1), data (n2).
    ops = domain_skeleton(2, "g", "00000000-0000-0000-0000-000000000002", "pv")
    ops += vif_add(2, 0, mac="00:16:3e:07:df:91", virt="pv", backend_domid=1)
    _, perms = play(ops)
    assert perms["/local/domain/2/device"] == ("n0", "r2")
    assert perms["/local/domain/2/device/suspend/event-channel"] == ("n2",)
    assert perms["/local/domain/2/control/shutdown"] == ("n2",)
    assert perms["/local/domain/2/device/vif/0"] == ("n2", "r1")
    assert perms["/local/domain/2/data"] == ("n2",)
    assert perms["/local/domain/1/backend/vif/2/0"] == ("n1", "r2")
    assert perms["/libxl/2"] == ("n0",)


def test_pci_backend_matches_2021_grep_dump_exactly() -> None:
    real = load_dump(str(DUMPS / "xen-devel-2021-09-pci-backend-grep.txt")).nodes
    made, perms = play(pci_backend(2, "DomU", [(parse_bdf("03:00.0"), PciOpts())]))
    assert made == real
    # Keys in the same order, as C xenstored lists them (order across domains is not ours).
    for path in ["/local/domain/0/backend/pci/2/0", "/local/domain/2/device/pci/0"]:
        assert [p for p in made if p.rpartition("/")[0] == path] == [
            p for p in real if p.rpartition("/")[0] == path], path
    assert perms["/local/domain/0/backend/pci/2/0"] == ("n0", "r2")


def test_pci_options_and_vslot() -> None:
    made, _ = play(pci_backend(3, "gpu", [
        (parse_bdf("0000:01:00.0"), PciOpts(permissive=True, msitranslate=True)),
        (parse_bdf("01:00.1"), PciOpts(vslot=0x5, rdm_policy="relaxed")),
    ]))
    be = "/local/domain/0/backend/pci/3/0"
    assert made[f"{be}/opts-0"] == "msitranslate=1,power_mgmt=0,permissive=1,rdm_policy=strict"
    assert made[f"{be}/vdevfn-1"] == "29"  # devfn = slot 5 << 3 | function 1
    assert made[f"{be}/num_devs"] == "2"
    assert made["/libxl/pci/0000-01-00-1/domid"] == "3"


def test_vif_rate_mtu_and_name() -> None:
    made, _ = play(vif_add(5, 1, mac="00:16:3e:00:00:01", virt="pv", rate="10Mb/s", mtu=9000,
                           vifname="web0", ip="10.0.0.5", script="vif-route"))
    be = "/local/domain/0/backend/vif/5/1"
    assert made[f"{be}/rate"] == "62500,50000"
    assert made[f"{be}/mtu"] == "9000" and made["/local/domain/5/device/vif/1/mtu"] == "9000"
    assert made[f"{be}/script"] == "/etc/xen/scripts/vif-route"
    named = (made[f"{be}/vifname"], made[f"{be}/ip"], made[f"{be}/type"])
    assert named == ("web0", "10.0.0.5", "vif")
    default, _ = play(vif_add(5, 0, mac="00:16:3e:00:00:02", virt="pv"))
    assert "/local/domain/0/backend/vif/5/0/mtu" not in default


def test_emulated_nic_refused_for_pv() -> None:
    with pytest.raises(ValueError, match="HVM"):
        vif_add(5, 0, mac="00:16:3e:00:00:02", virt="pvh", emulated=True)


def test_empty_cdrom_goes_to_qdisk() -> None:
    made, _ = play(vbd_add(7, 5632, target="", vdev="hdc", virt="hvm", cdrom=True, readwrite=False))
    be = "/local/domain/0/backend/qdisk/7/5632"
    assert (made[f"{be}/params"], made[f"{be}/mode"], made[f"{be}/removable"]) == ("aio:", "r", "1")
    assert made["/local/domain/7/device/vbd/5632/device-type"] == "cdrom"


def test_pv_disk_frontend_gets_protocol_hvm_does_not() -> None:
    pv, _ = play(vbd_add(4, 51712, target="/dev/vg/a", vdev="xvda", virt="pv"))
    hvm, _ = play(vbd_add(4, 51712, target="/dev/vg/a", vdev="xvda", virt="hvm"))
    assert pv["/local/domain/4/device/vbd/51712/protocol"] == "x86_64-abi"
    assert "/local/domain/4/device/vbd/51712/protocol" not in hvm


def test_build_post_pv_image_and_offline_vcpus() -> None:
    made, _ = play(build_post(9, "u", "pv", max_memkb=1024, target_memkb=512, videoram_kb=0,
                              max_vcpus=3, online_vcpus=1, start_time=12.5, kernel="/k",
                              cmdline="root=/dev/xvda1"))
    assert made["/vm/u/image/ostype"] == "linux"
    assert made["/vm/u/image/cmdline"] == "root=/dev/xvda1"
    assert [made[f"/local/domain/9/cpu/{i}/availability"] for i in range(3)] == [
        "online", "offline", "offline"]
    assert made["/vm/u/start_time"] == "12.50"
    with pytest.raises(ValueError):
        build_post(9, "u", "pv", max_memkb=1, target_memkb=1, videoram_kb=0, max_vcpus=1,
                   online_vcpus=2, start_time=0)


@pytest.mark.parametrize(("state", "expected"), [
    (4, [("write", "online", "0"), ("write", "state", "5")]),
    (6, []),  # already Closed: libxl leaves it alone
    (None, []),  # backend gone: only cleanup remains
])
def test_device_remove(state: int | None, expected: list[tuple[str, str, str]]) -> None:
    ops = device_remove(37, "vif", 0, backend_state=state)
    be = "/local/domain/0/backend/vif/37/0"
    assert [(o.kind, o.path, o.value) for o in ops] == [(k, f"{be}/{n}", v) for k, n, v in expected]
    assert device_remove(37, "vif", 0, backend_state=4, force=True)[0] == Op(
        "rm_tidy", "/local/domain/37/device/vif/0")


def test_attach_then_detach_leaves_no_trace(hvm_made: tuple[Tree, Perms]) -> None:
    base = dict(hvm_made[0])
    ops = vif_add(37, 1, mac="00:16:3e:00:00:09", virt="hvm")
    ops += _progress(37, [("vif", 1, "vif")])
    attached, _ = play(ops, base)
    assert attached["/local/domain/0/backend/vif/37/1/state"] == "4"
    assert attached["/local/domain/0/backend/vif/37/1/hotplug-status"] == "connected"
    detach = device_remove(37, "vif", 1, backend_state=4)
    steps = backend_progress("remove", 37, "vif", 1)
    states = [o.value for s in steps for o in s.ops if o.path.endswith("/state")]
    assert states == ["5", "6", "6"]
    final, _ = play(detach + [o for s in steps for o in s.ops], attached)
    assert final == base
    assert device_destroy(37, "vif", 1)[2] == Op("rm_tidy", "/libxl/37/device/vif/1")


def test_pci_backend_connects_without_a_hotplug_script() -> None:
    steps = backend_progress("add", 2, "pci", 0)
    assert all(s.actor != "hotplug" for s in steps)
    final, _ = play([o for s in steps for o in s.ops], play(pci_backend(
        2, "DomU", [(parse_bdf("03:00.0"), PciOpts())]))[0])
    assert final["/local/domain/0/backend/pci/2/0/state"] == "4"
    assert "/local/domain/0/backend/pci/2/0/hotplug-status" not in final
