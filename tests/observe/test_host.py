"""`observe --host`: host selection, and a simulated host observed field for field.

Real: the CLI entry point, the simulated host (embedded, on real sockets in a temp
dir), its toolstack building the domain, and the observer reading it back over the
xenstore wire protocol. Delays run 50x faster through RECONCILER_SIM_DELAY_SCALE.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.hosts import HostSpec, default_host, parse_host, select_host
from reconciler.cli.main import main
from reconciler.errors import UsageError
from reconciler.model import default_vm_uuid
from reconciler.xenfmt import auto_mac


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sim", HostSpec("sim", Path(".reconciler/sim"))),
        ("sim:/tmp/h", HostSpec("sim", Path("/tmp/h"))),
        ("xen", HostSpec("xen")),
    ],
)
def test_parse_host(text: str, expected: HostSpec) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize(("text", "fragment"), [("sim:", "names no directory"), ("xl", "unknown host 'xl'"), ("xen:/x", "unknown host")])
def test_parse_host_refuses(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_host(text)


def test_flag_beats_env_beats_default(tmp_path: Path) -> None:
    assert select_host("xen", {"RECONCILER_HOST": "sim:/a"}) == HostSpec("xen")
    assert select_host(None, {"RECONCILER_HOST": "sim:/a"}) == HostSpec("sim", Path("/a"))
    with pytest.raises(UsageError, match=r"\$RECONCILER_HOST: unknown host 'bogus'"):
        select_host(None, {"RECONCILER_HOST": "bogus"})
    caps = tmp_path / "capabilities"
    caps.write_text("control_d\n")
    assert default_host(caps) == "xen"
    caps.write_text("\n")  # a domU: /proc/xen exists but it is not the control domain
    assert default_host(caps) == "sim"
    assert default_host(tmp_path / "absent") == "sim"


def test_observe_sim_prints_the_domain_back(sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = ["--state", str(sim_dir)]
    created = main(["sim", "create", "web", "--virt", "pv", "--memory", "512", "--max-memory", "1024",
                    "--vcpus", "2", "--max-vcpus", "4", "--kernel", "/boot/vmlinuz",
                    "--disk", "/images/web.qcow2,xvda,qcow2", "--disk", "/images/data.img,xvdb,raw,ro",
                    "--nic", "xenbr0", *state])
    assert created == 0
    capsys.readouterr()
    assert main(["observe", "--host", f"sim:{sim_dir}", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    uuid = default_vm_uuid("web")
    assert data["domains"]["web"]["uuid"] == uuid and data["domains"]["web"]["power"] == "running"
    assert data["domains"]["web"]["managed"] is False  # the toolstack alone never marks a VM managed
    assert data["vms"]["web"] == {"virt": "pv", "memory": 512, "maxMemory": 1024, "vcpus": 2,
                                  "maxVcpus": 4, "kernel": "/boot/vmlinuz", "uuid": uuid}
    assert data["disks"]["web-disk-51712"] == {"vm": "web", "target": "/images/web.qcow2", "format": "qcow2",
                                               "vdev": "xvda", "access": "rw", "devtype": "disk", "discard": True}
    assert data["disks"]["web-disk-51728"]["access"] == "ro"
    assert data["disks"]["web-disk-51728"]["format"] == "raw"
    nic = data["nics"]["web-nic-0"]
    assert (nic["bridge"], nic["mac"], nic["index"]) == ("xenbr0", auto_mac(uuid, 0), 0)
    assert {name: h["state"] for name, h in data["health"].items()} == {
        "web-disk-51712": "connected", "web-disk-51728": "connected", "web-nic-0": "connected"}
    assert any(d["bdf"] == "0000:00:02.0" and d["pci_class"] == "0x0300" for d in data["hostPci"])
    assert data["firewall"][-1] == "-j REJECT"


def test_observe_sim_paused_and_unknown_dir_is_empty(sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "create", "idle", "--virt", "pvh", "--memory", "256", "--kernel", "/k",
                 "--paused", "--state", str(sim_dir)]) == 0
    capsys.readouterr()
    assert main(["observe", "--host", f"sim:{sim_dir}", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["domains"]["idle"]["power"] == "paused"
    fresh = sim_dir / "fresh"
    assert main(["observe", "--host", f"sim:{fresh}", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["domains"] == {} and data["vms"] == {}


def test_observing_writes_nothing_to_the_state_dir(sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "create", "ro", "--virt", "pvh", "--memory", "256", "--kernel", "/k", "--state", str(sim_dir)]) == 0
    files = sorted(p for p in sim_dir.iterdir() if p.suffix == ".json")
    assert [p.name for p in files] == ["host.json", "xenstore.json"]
    before = [(p.stat().st_mtime_ns, p.read_bytes()) for p in files]
    assert main(["observe", "--host", f"sim:{sim_dir}"]) == 0
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in files] == before
