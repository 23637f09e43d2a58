"""The simulated host's rpc-proxy policy (`drivers.sim.rpcpolicy`) through the ports: per-VM
entries set, read back and cleared over the host RPC, kept in host.json across a restart;
the global rules file seeded with OpenXT's stock rules and read as the host's; bad rules
refused with one line and nothing changed; faults.yaml reaches the `rpc_*` operations; and
`reconciler observe` shows the policy, a captured dump none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import open_sim
from drivers.sim.host import SimHost
from reconciler import rpc
from reconciler.cli.main import main
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model.host import RpcPolicy, RpcVmPolicy
from reconciler.observe.host import observe_host
from reconciler.ports import HostPorts, NoRpcPolicy

FAST = 0.02
WIN = "6b1c7a2e-0d4f-4b8e-9a55-3f1e2d4c5b6a"
UIVM = "00000000-0000-0000-0000-000000000001"
ENTRY = RpcVmPolicy(("allow destination com.citrix.xenclient.usbdaemon",
                     "deny destination com.citrix.xenclient.usbdaemon member policy_set_rule"),
                    (("usb-control", True),))


def _run(state_dir: Path, body: Any, **kwargs: Any) -> Any:
    async def main_() -> Any:
        async with open_sim(state_dir, delay_scale=FAST, **kwargs) as ports:
            return await body(ports)
    return asyncio.run(main_())


def test_set_read_clear_persist_across_a_restart(state_dir: Path) -> None:
    async def put(ports: HostPorts) -> RpcPolicy:
        await ports.rpc.set(WIN, ENTRY)
        await ports.rpc.set(UIVM, RpcVmPolicy(("allow all",)))
        await ports.rpc.set(UIVM, RpcVmPolicy((), (("domstore-read-access", True),)))  # the whole entry replaced
        return await ports.rpc.read()

    first = _run(state_dir, put)
    assert first.vms == {UIVM: RpcVmPolicy((), (("domstore-read-access", True),)), WIN: ENTRY}
    assert list(first.vms) == sorted(first.vms)
    saved = json.loads((state_dir / "host.json").read_text())["rpc_policy"]
    assert saved[WIN] == {"rules": list(ENTRY.rules), "properties": {"usb-control": True}}

    async def clear(ports: HostPorts) -> RpcPolicy:
        assert await ports.rpc.read() == first  # a new process: loaded from host.json
        await ports.rpc.clear(UIVM)
        await ports.rpc.clear(UIVM)  # absent: nothing to do
        return await ports.rpc.read()

    assert _run(state_dir, clear).vms == {WIN: ENTRY}
    assert _run(state_dir, lambda p: p.rpc.read(), read_only=True).vms == {WIN: ENTRY}


def test_the_global_file_is_seeded_with_the_stock_rules_and_read_as_the_hosts(state_dir: Path) -> None:
    # The read-only view of a host never started shows what the host will create.
    assert _run(state_dir, lambda p: p.rpc.read(), read_only=True).global_rules == rpc.STOCK_RULES
    assert _run(state_dir, lambda p: p.rpc.read()).global_rules == rpc.STOCK_RULES
    rules = state_dir / "rpc-proxy.rules"
    assert rules.read_text() == rpc.STOCK_RULES
    rules.write_text("deny all\nallow out-any\n")  # the host's file: edited by hand, never rewritten
    assert _run(state_dir, lambda p: p.rpc.read()).global_rules == "deny all\nallow out-any\n"
    assert rules.read_text() == "deny all\nallow out-any\n"
    rules.unlink()
    rules.mkdir()  # unreadable as a file
    assert _run(state_dir, lambda p: p.rpc.read()).global_rules is None


@pytest.mark.parametrize(("uuid", "entry", "message"), [
    (WIN, RpcVmPolicy(("allow destination org.freedesktop.DBus", "allow dom-uuid " + WIN)),
     "rpc-proxy rule 2 of VM " + WIN),
    (WIN, RpcVmPolicy(("Allow all",)), "rule 1"),
    (WIN, RpcVmPolicy(("allow stubdom maybe",)), "rule 1"),
    (WIN, RpcVmPolicy((), (("usb/control", True),)), "property 'usb/control'"),
    ("not-a-uuid", RpcVmPolicy(("allow all",)), "uuid must be"),
])
def test_bad_entries_are_refused_with_one_line_and_change_nothing(state_dir: Path, uuid: str, entry: RpcVmPolicy,
                                                                   message: str) -> None:
    async def body(ports: HostPorts) -> RpcPolicy:
        await ports.rpc.set(WIN, ENTRY)
        with pytest.raises(TerminalHostError) as info:
            await ports.rpc.set(uuid, entry)
        assert message in str(info.value) and "\n" not in str(info.value)
        return await ports.rpc.read()

    assert _run(state_dir, body).vms == {WIN: ENTRY}


def test_a_read_only_view_refuses_changes(state_dir: Path) -> None:
    async def body(ports: HostPorts) -> None:
        with pytest.raises(TerminalHostError, match="read-only"):
            await ports.rpc.set(WIN, ENTRY)

    _run(state_dir, body, read_only=True)


def test_faults_reach_the_rpc_operations(state_dir: Path) -> None:
    (state_dir / "faults.yaml").write_text("operations:\n  rpc_set: {error_rate: 1.0}\n")

    async def body(ports: HostPorts, ) -> RpcPolicy:
        with pytest.raises(TransientHostError, match="rpc_set failed: simulated transient error"):
            await ports.rpc.set(WIN, ENTRY)
        return await ports.rpc.read()

    assert _run(state_dir, body).vms == {}


def test_the_served_host_answers_over_its_socket(state_dir: Path) -> None:
    """Another process's `open_sim` reaches a running host (`sim serve`) over host.sock."""
    async def main_() -> RpcPolicy:
        host = await SimHost.open(state_dir, delay_scale=FAST)
        try:
            async with open_sim(state_dir) as ports:
                await ports.rpc.set(WIN, ENTRY)
            return host.core.rpc.read()
        finally:
            await host.close()

    assert asyncio.run(main_()).vms == {WIN: ENTRY}


def test_observe_shows_the_policy_and_a_dump_shows_none(state_dir: Path, capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    _run(state_dir, lambda p: p.rpc.set(WIN, ENTRY))
    assert main(["observe", "--host", f"sim:{state_dir}", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)["rpc"]
    assert shown["vms"] == {WIN: {"rules": list(ENTRY.rules), "properties": {"usb-control": True}}}
    assert shown["globalRules"][0] == "deny all" and "allow out-any" in shown["globalRules"]
    assert main(["observe", "--host", f"sim:{state_dir}"]) == 0
    assert "rpc:\n  globalRules:\n  - deny all\n" in capsys.readouterr().out
    dump = tmp_path / "dump.txt"
    dump.write_text("/local/domain/0/name = \"Domain-0\"\n")
    assert main(["observe", "--observed", str(dump), "--format", "json"]) == 0
    assert "rpc" not in json.loads(capsys.readouterr().out)


def test_ports_without_an_rpc_driver_show_no_policy(state_dir: Path) -> None:
    async def body(ports: HostPorts) -> Any:
        import dataclasses
        bare = dataclasses.replace(ports, rpc=NoRpcPolicy())
        with pytest.raises(TerminalHostError, match="without an rpc-proxy driver"):
            await bare.rpc.set(WIN, ENTRY)
        return (await observe_host(bare)).rpc, (await observe_host(ports)).rpc

    bare, full = _run(state_dir, body)
    assert bare is None and full is not None and full.global_rules == rpc.STOCK_RULES


def test_sim_rpc_lists_sets_and_clears_by_hand(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def sim(*args: str) -> tuple[int, str, str]:
        code = main(["sim", "rpc", *args, "--state", str(state_dir)])
        out, err = capsys.readouterr()
        return code, out, err

    assert sim() == (0, "", "")
    assert sim("--set", WIN, ENTRY.rules[0], ENTRY.rules[1], "usb-control=true") == (0, (
        f"{WIN}\n  1  {ENTRY.rules[0]}\n  2  {ENTRY.rules[1]}\n     usb-control=true\n"), "")
    assert _run(state_dir, lambda p: p.rpc.read()).vms == {WIN: ENTRY}
    code, out, err = sim("--set", WIN, "allow dom-uuid " + WIN)
    assert (code, out) == (1, "") and err.startswith("reconciler: error: rpc-proxy rule 1") and err.count("\n") == 1
    code, out, err = sim("--set", WIN, "usb-control=maybe")
    assert (code, out) == (1, "") and "expected NAME=true or NAME=false" in err and err.count("\n") == 1
    assert sim("--clear", WIN) == (0, "", "")
