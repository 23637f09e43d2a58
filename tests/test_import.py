"""`reconciler import`: manifests for the domains another toolstack built (DESIGN 6).

Real: the CLI entry point, captured dumps from xen-devel, the simulated host (its
toolstack builds the domains, the observer reads them over the xenstore protocol),
the loader that validates what import wrote. The unit tests build ObservedState from
the manifest models, as the observer does, for cases the simulated toolstack cannot
build (a driver domain, a host name a manifest refuses, a managed domain).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from reconciler.cli.main import main
from reconciler.errors import UsageError
from reconciler.importer import import_manifests, skipped, valid_name
from reconciler.loader import load
from reconciler.model.common import Metadata
from reconciler.model.devices import NIC, Disk, NICSpec, PCIPassthrough
from reconciler.model.host import FirewallEntry, RpcPolicy, RpcVmPolicy
from reconciler.model.observed import DomainInfo, ObservedState
from reconciler.model.vm import VM, VMSpec

DUMPS = Path(__file__).resolve().parent / "data" / "xenstore-dumps"
HVM_DUMP = DUMPS / "xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"
PVH_DUMP = DUMPS / "xen-devel-2022-11-rpi4-pvh-phy-xenstore-ls.txt"
PCI_DUMP = DUMPS / "xen-devel-2021-09-pci-backend-grep.txt"
UUID = "0b7c1a52-3c1e-4d6a-9f5e-2f0e8b1d7c44"


def _vm(name: str, **spec: object) -> VM:
    """A VM as the observer builds it: memory and vcpus always with their maximum."""
    spec = {"virt": "pv", "memory": 256, "vcpus": 1, **spec}
    spec = {"maxMemory": spec["memory"], "maxVcpus": spec["vcpus"], **spec}
    return VM.model_validate({"kind": "VM", "metadata": {"name": name}, "spec": spec})


def _info(name: str, domid: int, uuid: str | None = None, **kw: object) -> DomainInfo:
    return DomainInfo(name, domid, uuid, **kw)  # type: ignore[arg-type]


def _spec(text: str) -> dict[str, object]:
    doc = yaml.safe_load(text)
    assert doc["kind"] == "VM" and doc["apiVersion"] == "xen.reconciler/v1"
    spec: dict[str, object] = doc["spec"]
    return spec


def _valid(files: dict[str, str], tmp: Path) -> None:
    for name, text in files.items():
        (tmp / name).write_text(text)
    result = load([str(tmp)])
    assert result.state is not None, [str(d) for d in result.diagnostics]


def _host() -> ObservedState:
    """A driver domain `net` serving web's NIC from another bridge, web with a disk from
    dom0, a PCI device and vm-data, an HVM guest with its stub domain, dom0-like noise."""
    vms = {
        "net": _vm("net", uuid="11111111-1111-4111-8111-111111111111", kernel="/boot/net"),
        "web": _vm("web", uuid=UUID, kernel="/boot/vmlinuz", cmdline="root=/dev/xvda1", memory=512, maxMemory=1024,
                   vcpus=2, maxVcpus=4, xenstoreData={"vm-data/role": "web", "vm-data/on": "yes"}),
        "win": _vm("win", virt="hvm", uuid="22222222-2222-4222-8222-222222222222", memory=2048),
        "win-dm": _vm("win-dm", uuid="33333333-3333-4333-8333-333333333333", kernel="/stub", memory=96),
    }
    disks = {"web-disk-51712": Disk.model_validate({"kind": "Disk", "metadata": {"name": "web-disk-51712"}, "spec": {
        "vm": "web", "target": "/images/web.qcow2", "format": "qcow2", "vdev": "xvda", "access": "rw", "devtype": "disk"}})}
    nics = {
        "web-nic-1": NIC.model_validate({"kind": "NIC", "metadata": {"name": "web-nic-1"}, "spec": {
            "vm": "web", "index": 1, "backendVM": "net", "mac": "00:16:3e:00:00:01", "rate": "10Mb/s", "mtu": 9000,
            "vifname": "web-eth1", "ip": "10.0.0.5"}}),
        "web-nic-0": NIC.model_validate({"kind": "NIC", "metadata": {"name": "web-nic-0"}, "spec": {
            "vm": "web", "index": 0, "bridge": "xenbr1", "mac": "00:16:3e:00:00:00", "mtu": 1500,
            "script": "/etc/xen/scripts/vif-route"}}),
    }
    pci = {"web-pci-0": PCIPassthrough.model_validate({"kind": "PCIPassthrough", "metadata": {"name": "web-pci-0"},
                                                       "spec": {"vm": "web", "bdf": "0000:00:19.0", "permissive": True,
                                                                "guestSlot": 5}})}
    domains = {
        "net": _info("net", 1, "11111111-1111-4111-8111-111111111111"),
        "web": _info("web", 2, UUID),
        "win": _info("win", 3, "22222222-2222-4222-8222-222222222222", power="paused"),
        "win-dm": _info("win-dm", 4, "33333333-3333-4333-8333-333333333333"),
    }
    firewall = (FirewallEntry(2, 0, None, 80), FirewallEntry(0, 2, 80, None),  # web <-> dom0:80
                FirewallEntry(4, 0, None, 5000),  # win's stub domain -> dom0:5000, one way
                FirewallEntry(2, 1), FirewallEntry(1, 2),  # net <-> web
                FirewallEntry(0, 0), FirewallEntry(target="REJECT"))  # the table's own
    policy = RpcPolicy(None, {UUID: RpcVmPolicy(("allow destination org.freedesktop.DBus", "deny all"),
                                                (("usb-control", True),))})
    return ObservedState(vms=vms, disks=disks, nics=nics, pci=pci, domains=domains, firewall=firewall, rpc=policy)


def test_every_observed_field_is_written_in_manifest_terms(tmp_path: Path) -> None:
    files = import_manifests(_host(), source="test")
    assert list(files) == ["net.yaml", "web.yaml", "win.yaml"]  # the stub domain is win's stubdom
    web = _spec(files["web.yaml"])
    assert web == {
        "adopt": True, "uuid": UUID, "virt": "pv", "memory": 512, "maxMemory": 1024, "vcpus": 2, "maxVcpus": 4,
        "kernel": "/boot/vmlinuz", "cmdline": "root=/dev/xvda1",
        "xenstoreData": {"vm-data/on": "yes", "vm-data/role": "web"},
        "disks": [{"target": "/images/web.qcow2", "format": "qcow2", "vdev": "xvda", "access": "rw", "devtype": "disk"}],
        "nics": [  # in devid order, whatever order the observer listed them in
            {"index": 0, "bridge": "xenbr1", "mac": "00:16:3e:00:00:00", "mtu": 1500, "script": "/etc/xen/scripts/vif-route"},
            {"index": 1, "backendVM": "net", "mac": "00:16:3e:00:00:01", "mtu": 9000, "rate": "10Mb/s",
             "ip": "10.0.0.5", "vifname": "web-eth1"},
        ],
        "properties": {"usb-control": True},
        "pci": [{"bdf": "0000:00:19.0", "guestSlot": "0x05", "permissive": True}],
        "v4vRules": ["myself -> 0:80"],
        "rpcRules": ["allow destination org.freedesktop.DBus", "deny all"],
    }
    net = _spec(files["net.yaml"])
    assert net["providesNetworkBackend"] is True and "providesNetworkBackend" not in web
    assert net["v4vRules"] == ["myself -> dom-name=web"]  # a rule between two imported domains: once, the client's
    assert "serves another domain's disk or NIC backend" in files["net.yaml"]
    win = _spec(files["win.yaml"])
    assert win["state"] == "paused" and win["stubdom"] == {"enabled": True, "memory": 96}
    assert win["v4vRules"] == [{"rule": "my-stubdom -> 0:5000", "bidirectional": False}]
    assert "bootloader" not in win and "#   hvm: unset" in files["win.yaml"]
    _valid(files, tmp_path)


def test_header_says_what_was_not_observed_and_the_default() -> None:
    text = import_manifests(_host(), ["web"], source="host sim:/x")["web.yaml"]
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0] == f"# Imported by `reconciler import` from host sim:/x: domain 'web', uuid {UUID}."
    for fragment in ("#   type: svm", "#   lifecycle: onPoweroff destroy, onReboot restart, onCrash destroy",
                     "#   display: type none", "#   bootloader: none", "add display.vncPassword yourself"):
        assert any(fragment in line for line in header), fragment
    assert all(line.startswith("#") for line in text.split("apiVersion:")[0].splitlines())


def test_a_pvh_domain_without_a_shown_kernel_gets_a_placeholder_bootloader_said_in_the_header(tmp_path: Path) -> None:
    vm = VM.model_construct(metadata=Metadata(name="p"), spec=VMSpec.model_construct(virt="pvh", memory=128, uuid=UUID))
    state = ObservedState(vms={"p": vm}, domains={"p": _info("p", 1, UUID)})
    files = import_manifests(state, source="test")
    assert _spec(files["p.yaml"])["bootloader"] == "pygrub"
    assert "bootloader: pygrub, a PLACEHOLDER" in files["p.yaml"]
    _valid(files, tmp_path)


def test_firewall_entries_no_rule_can_spell_and_dump_sources_are_said_in_the_header() -> None:
    state = ObservedState(vms={"a": _vm("a", kernel="/k")}, domains={"a": _info("a", 3, UUID)},
                          firewall=(FirewallEntry(3, 99, None, 22),), rpc=RpcPolicy(None, {UUID: RpcVmPolicy(("deny all",))}))
    text = import_manifests(state, source="t")["a.yaml"]
    assert "# firewall entry not imported (--dom-in 3 --dom-out 99 --port-out 22 -j ACCEPT): no v4v rule names" in text
    assert "v4vRules" not in _spec(text) and _spec(text)["rpcRules"] == ["deny all"]
    dump = import_manifests(dataclasses.replace(state, firewall=None, rpc=None), source="t")["a.yaml"]
    assert "# v4vRules: none; this source cannot show the v4v firewall table (a captured dump)" in dump
    assert "# rpcRules/properties: none; this source cannot show rpc-proxy's policy (a captured dump)" in dump


def test_secrets_are_never_written() -> None:
    vm = _vm("vnc", virt="hvm", display={"type": "vnc", "vncPassword": "hunter2"})
    state = ObservedState(vms={"vnc": vm}, domains={"vnc": _info("vnc", 1, UUID)})
    assert isinstance(vm.spec.display.vnc_password, SecretStr)
    text = import_manifests(state, source="test")["vnc.yaml"]
    assert "hunter2" not in text and "sensitive" not in text and "sha256" not in text
    assert _spec(text)["display"] == {"type": "vnc"}


def test_managed_domains_dom0_and_domains_without_memory_are_not_imported() -> None:
    state = ObservedState(vms={"mine": _vm("mine"), "theirs": _vm("theirs")},
                          domains={"mine": _info("mine", 1, None, managed=True), "theirs": _info("theirs", 2, None),
                                   "bare": _info("bare", 3, None)})
    assert list(import_manifests(state, source="test")) == ["theirs.yaml"]
    assert skipped(state) == {"bare": "domain 3 ('bare') has no readable memory in xenstore: no manifest written for it"}


def test_a_host_name_the_manifest_refuses_becomes_a_valid_one(tmp_path: Path) -> None:
    assert [valid_name(n, 7) for n in ("Web_1", "guest_centos7", "__", "-a-", "X" * 80, "../../etc/x")] == [
        "web-1", "guest-centos7", "domain-7", "a", "x" * 63, "etc-x"]  # a file name too: never a path
    files = import_manifests(ObservedState(), source="test") | import_manifests(
        _observed_dump(HVM_DUMP), source="dump")
    assert list(files) == ["guest-centos7.yaml"]
    text = files["guest-centos7.yaml"]
    assert "# Renamed: 'guest_centos7' is not a manifest name" in text
    assert "not a manifest name (a name of" not in text  # the observer's problem is replaced by the rename note
    assert _spec(text)["uuid"] == "9a6857f8-05a0-4c8d-92c3-1ea04bc28c32"
    _valid(files, tmp_path)


def test_renamed_names_that_clash_get_the_domid_and_backend_references_follow() -> None:
    web = _vm("x", uuid=UUID)
    vms = {"web-1": web, "Web_1": web, "Net_A": _vm("x")}
    nic = NIC.model_construct(metadata=Metadata(name="x"), spec=NICSpec.model_construct(
        vm="Web_1", index=0, backend_vm="Net_A", mac="00:16:3e:00:00:09"))
    state = ObservedState(vms=vms, nics={"Web_1-nic-0": nic},
                          domains={"web-1": _info("web-1", 1, None), "Web_1": _info("Web_1", 4, None),
                                   "Net_A": _info("Net_A", 5, None)})
    files = import_manifests(state, source="test")
    assert list(files) == ["net-a.yaml", "web-1.yaml", "web-1-4.yaml"]
    assert _spec(files["web-1-4.yaml"])["nics"] == [{"index": 0, "backendVM": "net-a", "mac": "00:16:3e:00:00:09"}]
    assert _spec(files["net-a.yaml"])["providesNetworkBackend"] is True


def test_vm_selects_by_host_or_manifest_name_and_refuses_others() -> None:
    state = _host()
    assert list(import_manifests(state, ["win", "net"], source="t")) == ["net.yaml", "win.yaml"]
    with pytest.raises(UsageError, match=r"^--vm win-dm: not an unmanaged domain of t; unmanaged domains: net, web, win$"):
        import_manifests(state, ["win-dm"], source="t")


def _observed_dump(path: Path) -> ObservedState:
    from drivers.dump import load_dump
    from reconciler.observe import observe_tree

    dump = load_dump(str(path))
    return observe_tree(dump.nodes, truncated=frozenset(dump.truncated))


# ---- through the CLI ----------------------------------------------------------------------


@pytest.mark.parametrize("dump", [HVM_DUMP, PVH_DUMP])
def test_dump_import_validates_and_is_byte_stable(dump: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        assert main(["import", "--observed", str(dump)]) == 0
        out, err = capsys.readouterr()
        assert err.startswith(f"host: {dump} (captured xenstore dump)\n")
        outputs.append(out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("---\n# Imported by `reconciler import` from the dump ")
    (tmp_path / "all.yaml").write_text(outputs[0])
    assert main(["validate", str(tmp_path)]) == 0


def test_a_domain_without_memory_is_named_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--observed", str(PCI_DUMP)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "reconciler: note: domain 2 ('DomU') has no readable memory in xenstore: no manifest written for it\n" in err
    assert err.endswith("reconciler: note: no domain to import: every domain is managed by the reconciler (or unreadable)\n")


def test_sim_domains_round_trip_into_valid_manifests(sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = ["--state", str(sim_dir)]
    assert main(["sim", "create", "web", "--virt", "pv", "--memory", "512", "--max-memory", "1024", "--vcpus", "2",
                 "--max-vcpus", "4", "--kernel", "/boot/vmlinuz", "--disk", "/images/web.qcow2,xvda,qcow2",
                 "--disk", "/images/data.img,xvdb,raw,ro", "--nic", "xenbr0", "--nic", "xenbr1,00:16:3e:12:34:56",
                 *state]) == 0
    assert main(["sim", "create", "db", "--virt", "hvm", "--memory", "1024", "--paused", *state]) == 0
    capsys.readouterr()
    out = tmp_path / "m"
    assert main(["import", "--host", f"sim:{sim_dir}", "--out", str(out)]) == 0
    assert capsys.readouterr().err.endswith(f"imported 2 domain(s) into {out}: 2 file(s) written, 0 unchanged\n")
    assert sorted(p.name for p in out.iterdir()) == ["db.yaml", "web.yaml"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in out.iterdir())
    web = _spec((out / "web.yaml").read_text())
    assert (web["memory"], web["maxMemory"], web["vcpus"], web["maxVcpus"], web["kernel"]) == (512, 1024, 2, 4, "/boot/vmlinuz")
    assert [(d["vdev"], d["target"], d["format"], d["access"]) for d in web["disks"]] == [  # type: ignore[attr-defined]
        ("xvda", "/images/web.qcow2", "qcow2", "rw"), ("xvdb", "/images/data.img", "raw", "ro")]
    assert [(n["index"], n["bridge"]) for n in web["nics"]] == [(0, "xenbr0"), (1, "xenbr1")]  # type: ignore[attr-defined]
    assert web["nics"][1]["mac"] == "00:16:3e:12:34:56"  # type: ignore[index]
    assert _spec((out / "db.yaml").read_text())["state"] == "paused"
    assert main(["validate", str(out)]) == 0


def test_out_refuses_an_edited_file_unless_force(sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "create", "web", "--virt", "pv", "--memory", "256", "--kernel", "/k", "--state", str(sim_dir)]) == 0
    out = tmp_path / "m"
    host = ["--host", f"sim:{sim_dir}"]
    assert main(["import", *host, "--out", str(out)]) == 0
    first = (out / "web.yaml").read_text()
    assert main(["import", *host, "--out", str(out)]) == 0  # same text: left as it is
    assert capsys.readouterr().err.endswith("0 file(s) written, 1 unchanged\n")
    (out / "web.yaml").write_text(first + "# my note\n")
    assert main(["import", *host, "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"reconciler: error: --out {out}: {out}/web.yaml exists and differs from the import (edited since?); "
                       "nothing written; use --force to replace it")
    assert (out / "web.yaml").read_text().endswith("# my note\n")
    assert main(["import", *host, "--out", str(out), "--force"]) == 0
    assert (out / "web.yaml").read_text() == first
    assert [p.name for p in out.iterdir()] == ["web.yaml"]  # no temp file left


@pytest.mark.parametrize(("argv", "message"), [
    (["--vm", "nosuch"], "reconciler: error: --vm nosuch: not an unmanaged domain of the dump {dump}; "
                         "unmanaged domains: guest-centos7"),
    (["--force"], "reconciler: error: --force: only with --out DIR (stdout is never refused)"),
])
def test_cli_errors_are_one_line_and_exit_1(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--observed", str(HVM_DUMP), *argv]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1] == message.format(dump=HVM_DUMP)
    assert "Traceback" not in err


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["import", "--observed", str(HVM_DUMP), "--out", str(target)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"reconciler: error: --out {target}: not a directory"
    assert os.path.isfile(target)


# ---- what import writes is what the host runs ---------------------------------------------


def _as_if_applied(files: dict[str, str], observed: ObservedState, tmp: Path) -> tuple[str, ...]:
    """The diff of the imported manifests against `observed`, each domain marked as if the
    reconciler had applied exactly its imported manifest (managed, with that last-applied
    record): independent of how `adopt` is planned, every change left is a field the
    import wrote differently from what the host shows."""
    from reconciler.diff import diff
    from reconciler.diff.applied import applied_record

    _valid(files, tmp)
    desired = load([str(tmp)]).state
    assert desired is not None
    domains = dict(observed.domains)
    for name in desired.vms:
        text, digest = applied_record(desired, name)
        domains[name] = dataclasses.replace(domains[name], managed=True, applied=text, digest=digest)
    result = diff(desired, dataclasses.replace(observed, domains=domains))
    return tuple(f"{c.kind} {c.name}: {c.reason} {[(f.path, f.before, f.after) for f in c.fields]}" for c in result.changes)


def test_imported_manifests_match_the_host_field_for_field(tmp_path: Path) -> None:
    state = _host()
    assert _as_if_applied(import_manifests(state, source="t"), state, tmp_path) == ()


def test_imported_dump_matches_the_dump_field_for_field(tmp_path: Path) -> None:
    state = _observed_dump(PVH_DUMP)
    assert _as_if_applied(import_manifests(state, source="t"), state, tmp_path) == ()


def test_imported_sim_host_matches_it_field_for_field(sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.cli.hosts import observe_selected

    state = ["--state", str(sim_dir)]
    assert main(["sim", "create", "web", "--virt", "pv", "--memory", "512", "--max-memory", "1024", "--vcpus", "2",
                 "--max-vcpus", "4", "--kernel", "/boot/vmlinuz", "--disk", "/images/web.qcow2,xvda,qcow2",
                 "--disk", "/images/cd.iso,hdc,raw,ro", "--nic", "xenbr0", "--nic", "xenbr1,00:16:3e:12:34:56",
                 *state]) == 0
    assert main(["sim", "create", "db", "--virt", "hvm", "--memory", "1024", "--pci", "0000:00:02.0", "--paused", *state]) == 0
    assert main(["sim", "create", "pvh", "--virt", "pvh", "--memory", "128", "--kernel", "/boot/k", *state]) == 0
    observed = observe_selected(f"sim:{sim_dir}")
    assert _as_if_applied(import_manifests(observed, source="t"), observed, tmp_path) == ()


def test_imported_openxt_desktop_matches_it_field_for_field(sim_dir: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The example with a network driver domain, an HVM guest with its stub domain, PCI,
    v4v rules and rpc-proxy rules, applied, then its managed markers dropped from what
    is observed (as if another toolstack had built it): import writes it back whole."""
    from reconciler.cli.hosts import observe_selected
    from tests.conftest import with_runnable_hooks

    example = with_runnable_hooks("examples/openxt-desktop", tmp_path / "example")
    assert main(["apply", str(example), "--host", f"sim:{sim_dir}"]) == 0
    capsys.readouterr()
    observed = observe_selected(f"sim:{sim_dir}")
    foreign = {name: dataclasses.replace(info, managed=False, applied=None, digest=None)
               for name, info in observed.domains.items()}
    observed = dataclasses.replace(observed, domains=foreign)
    files = import_manifests(observed, source="t")
    assert list(files) == ["ndvm.yaml", "uivm.yaml", "win10.yaml", "work-linux.yaml"]
    win10 = _spec(files["win10.yaml"])
    assert win10["stubdom"] == {"enabled": True, "memory": 96} and "my-stubdom -> 0:4001" in win10["v4vRules"]  # type: ignore[operator]
    assert _spec(files["ndvm.yaml"])["providesNetworkBackend"] is True
    (tmp_path / "imported").mkdir()
    assert _as_if_applied(files, observed, tmp_path / "imported") == ()
