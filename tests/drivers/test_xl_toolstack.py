"""XlToolstack against a fake `xl` on PATH: the exact argv, the cfg file, parsed results
and the error mapping (exit status, stderr text, slow answers)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.xl import XlSettings, XlToolstack
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.build import build_of
from reconciler.model.common import default_vm_uuid
from reconciler.ports import ToolstackPort

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.model import DesiredState
    from tests.drivers.conftest import FakeTool

SECRET = "Tr0ub4dor&3"
VMS = f"""
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: uivm}}
spec:
  virt: hvm
  memory: 1Gi
  display: {{type: vnc, vncPassword: "{SECRET}"}}
  disks: [{{target: /dev/vg0/uivm, vdev: xvda}}]
  nics: [{{bridge: xenbr0}}]
"""


def toolstack(tmp_path: Path, **settings: object) -> XlToolstack:
    cfg_dir = tmp_path / "cfgs"
    cfg_dir.mkdir(exist_ok=True)
    return XlToolstack(XlSettings(cfg_dir=cfg_dir, **settings))  # type: ignore[arg-type]


def test_satisfies_the_port(tmp_path: Path) -> None:
    port: ToolstackPort = toolstack(tmp_path)
    assert port is not None


def test_create_writes_a_private_cfg_runs_xl_and_removes_it(
        tmp_path: Path, fake_xl: FakeTool, load_state: Callable[[str], DesiredState]) -> None:
    xl = toolstack(tmp_path)
    state = load_state(VMS)
    domid = asyncio.run(xl.create(state.vms["uivm"], build_of(state, "uivm")))
    assert domid == 1
    calls = fake_xl.calls()
    assert calls[0][:3] == ["create", "-e", "-p"] and len(calls[0]) == 4
    assert calls[1] == ["domid", "uivm"]
    assert SECRET not in " ".join(" ".join(c) for c in calls)  # never in argv
    cfg = Path(calls[0][3])
    assert cfg.parent.parent == tmp_path / "cfgs" and cfg.name == "uivm.cfg"
    assert not cfg.parent.exists()  # removed after xl create
    assert fake_xl.state["cfg_mode"] == 0o600 and fake_xl.state["cfg_dir_mode"] == 0o700
    text = (fake_xl.path.parent / "last.cfg").read_text()
    assert f'vncpasswd = "{SECRET}"' in text and 'name = "uivm"' in text and "memory = 1024" in text
    # Built as xl builds: the devices are in the cfg, none is hot-plugged after.
    assert 'disk = [ "format=raw, vdev=xvda, access=rw, discard, target=/dev/vg0/uivm" ]' in text.splitlines()
    assert any(line.startswith('vif = [ "devid=0, mac=') for line in text.splitlines())


def test_create_unpaused_and_list(tmp_path: Path, fake_xl: FakeTool,
                                  load_state: Callable[[str], DesiredState]) -> None:
    xl = toolstack(tmp_path)
    asyncio.run(xl.create(load_state(VMS).vms["uivm"], paused=False))
    assert fake_xl.calls()[0][:2] == ["create", "-e"] and "-p" not in fake_xl.calls()[0]
    domains = asyncio.run(xl.list_domains())
    assert fake_xl.calls()[-2:] == [["list", "-v"], ["list", "-l"]]
    assert [(d.domid, d.name, d.power, d.memory_mib, d.passthrough) for d in domains] == [(1, "uivm", "running", 1024, False)]
    assert domains[0].uuid == default_vm_uuid("uivm")


def test_failed_create_names_the_command_and_hides_the_password(
        tmp_path: Path, fake_xl: FakeTool, load_state: Callable[[str], DesiredState]) -> None:
    fake_xl.update(fail={"create": "echo-password"})
    with pytest.raises(TerminalHostError) as info:
        asyncio.run(toolstack(tmp_path).create(load_state(VMS).vms["uivm"]))
    message = str(info.value)
    assert message.startswith("`xl create` failed (exit status 1): ")
    assert "config parsing error near `\"(sensitive)\"': syntax error" in message
    assert SECRET not in message
    assert not list((tmp_path / "cfgs").iterdir())  # the cfg is gone on failure too


def test_existing_domain_is_terminal(tmp_path: Path, fake_xl: FakeTool,
                                     load_state: Callable[[str], DesiredState]) -> None:
    xl = toolstack(tmp_path)
    vm = load_state(VMS).vms["uivm"]
    asyncio.run(xl.create(vm))
    with pytest.raises(TerminalHostError, match='`xl create` failed .*Domain with name "uivm" already exists'):
        asyncio.run(xl.create(vm))


@pytest.mark.parametrize(("method", "args", "argv"), [
    ("pause", (1,), ["pause", "1"]),
    ("unpause", (1,), ["unpause", "1"]),
    ("destroy", (1,), ["destroy", "1"]),
    ("mem_set", (1, 768), ["mem-set", "1", "768m"]),
    ("vcpu_set", (1, 2), ["vcpu-set", "1", "2"]),
    ("detach_disk", (1, "xvdb"), ["block-detach", "1", "xvdb"]),
    ("detach_nic", (1, 2), ["network-detach", "1", "2"]),
    ("detach_pci", (1, "03:00.0"), ["pci-detach", "1", "0000:03:00.0"]),
])
def test_simple_commands_run_the_exact_argv(tmp_path: Path, fake_xl: FakeTool,
                                            method: str, args: tuple[object, ...], argv: list[str]) -> None:
    fake_xl.update(domains=[{"domid": 1, "name": "a", "uuid": "1" * 8 + "-1111-1111-1111-" + "1" * 12,
                             "mem": 512, "vcpus": 1, "state": "r-----"}])
    asyncio.run(getattr(toolstack(tmp_path), method)(*args))
    assert fake_xl.calls() == [argv]


def test_device_attach_argv(tmp_path: Path, fake_xl: FakeTool, load_state: Callable[[str], DesiredState]) -> None:
    state = load_state(VMS)
    fake_xl.update(domains=[{"domid": 4, "name": "uivm", "uuid": "x", "mem": 1, "vcpus": 1, "state": "r-----"}])
    xl = toolstack(tmp_path)

    async def attach() -> None:
        await xl.attach_disk(4, state.disks["uivm-xvda"])
        await xl.attach_nic(4, state.nics["uivm-nic0"])
        await xl.attach_pci(4, "0000:00:02.0", permissive=True, guest_slot=2)

    asyncio.run(attach())
    disk, nic, pci = fake_xl.calls()
    assert disk == ["block-attach", "4", "format=raw", "vdev=xvda", "access=rw", "discard", "target=/dev/vg0/uivm"]
    assert nic[:3] == ["network-attach", "4", "devid=0"] and nic[3].startswith("mac=")
    assert nic[4:] == ["bridge=xenbr0", "mtu=1500"]
    assert pci == ["pci-attach", "4", "0000:00:02.0@02,permissive=1"]


def test_unknown_domain_is_terminal_with_xls_message(tmp_path: Path, fake_xl: FakeTool) -> None:
    with pytest.raises(TerminalHostError) as info:
        asyncio.run(toolstack(tmp_path).pause(42))
    assert str(info.value) == "`xl pause` failed (exit status 1): 42 is an invalid domain identifier (rc=-6)"
    assert not isinstance(info.value, TransientHostError)


@pytest.mark.parametrize("stderr", [
    "libxl: error: libxl_pci.c:1477:pci_add_dm_done: Device or resource busy",
    "xenstore: EAGAIN, try again",
    "libxl: error: libxl_aoutils.c:539:async_exec_timeout: killing execution of /etc/xen/scripts/block add because of timeout",
])
def test_busy_and_timeout_messages_are_transient(tmp_path: Path, fake_xl: FakeTool, stderr: str) -> None:
    fake_xl.update(fail={"pci-attach": "some earlier line\n" + stderr})
    with pytest.raises(TransientHostError, match="`xl pci-attach` failed") as info:
        asyncio.run(toolstack(tmp_path).attach_pci(1, "0000:00:02.0"))
    assert str(info.value).endswith(stderr)


def test_slow_command_times_out_transient_and_is_killed(tmp_path: Path, fake_xl: FakeTool) -> None:
    fake_xl.update(sleep={"unpause": 30})
    started = time.monotonic()
    with pytest.raises(TransientHostError, match=r"`xl unpause` did not finish within 0.5 s and was killed"):
        asyncio.run(toolstack(tmp_path, timeout=0.5).unpause(1))
    assert time.monotonic() - started < 5


def test_shutdown_waits_with_the_ports_timeout(tmp_path: Path, fake_xl: FakeTool) -> None:
    fake_xl.update(domains=[{"domid": 2, "name": "b", "uuid": "x", "mem": 1, "vcpus": 1, "state": "r-----"}],
                   sleep={"shutdown": 30})
    with pytest.raises(TransientHostError, match=r"`xl shutdown` did not finish within 0.3 s"):
        asyncio.run(toolstack(tmp_path).shutdown(2, timeout=0.3))
    assert fake_xl.calls() == [["shutdown", "-w", "-F", "2"]]
    fake_xl.update(sleep={})
    asyncio.run(toolstack(tmp_path, acpi_fallback=False).shutdown(2, timeout=5))
    assert fake_xl.calls()[-1] == ["shutdown", "-w", "2"]
    assert fake_xl.state["domains"] == []


def test_missing_xl_is_terminal_and_says_so(tmp_path: Path) -> None:
    xl = XlToolstack(XlSettings(executable=str(tmp_path / "nowhere" / "xl")))
    with pytest.raises(TerminalHostError, match=r"`xl list`: .*nowhere/xl not found; install it"):
        asyncio.run(xl.list_domains())
    assert os.path.basename(xl.settings.executable) == "xl"
