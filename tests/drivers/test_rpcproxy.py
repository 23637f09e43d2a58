"""DbRpcPolicy (drivers/rpcproxy.py): rpc-proxy's per-VM policy in the OpenXT config DB.

Real: the driver's subprocesses (argv lists, no shell), real processes whose kernel `comm`
is `rpc-proxy` (a Python child that renames itself through /proc/self/comm and records
each SIGHUP it receives), the global rules file, the simulated xenstored for `open_xen`.
Faked: `db-cmd` is a small Python script that keeps the DB tree in a JSON file and acts as
OpenXT/manager dbd/db_cmd.ml does over dbd: its argv patterns, `ls -f` printed by do_ls
(`PATH =` above children, `PATH = "VALUE"` for a leaf, values raw), `write` to `/` or
`/vm` refused with "Nope, not doing that." and exit 1, `rm /` printing "bad path", usage
with exit 1, and (DB-DOWN file present) dbd unreachable as the OCaml client dies on an
uncaught DBus exception, exit 2. The process table the driver scans is a directory of
symlinks to the children's real /proc entries, so only this test's processes are signalled
(one test uses the real /proc).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.rpcproxy import DbRpcPolicy, RpcProxySettings, parse_ls, policy_of
from drivers.xen import XenSettings, open_xen
from drivers.xenstore import Store, XenstoreServer
from reconciler import rpc
from reconciler.errors import TerminalHostError
from reconciler.model.host import RpcPolicy, RpcVmPolicy
from reconciler.ports import NoRpcPolicy, RpcPolicyPort

WIN = "6b1c7a2e-0d4f-4b8e-9a55-3f1e2d4c5b6a"
UIVM = "00000000-0000-0000-0000-000000000001"
RULES = ("allow destination com.citrix.xenclient.networkdaemon",
         "allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get",
         "deny destination com.citrix.xenclient.xenmgr interface com.citrix.xenclient.xenmgr.config member Set")
ENTRY = RpcVmPolicy(RULES, (("domstore-read-access", True), ("usb-control", False)))

FAKE_DB_CMD = r'''#!__PYTHON__
import json, os, sys
HERE = __HERE__
DB, LOG = os.path.join(HERE, "db.json"), os.path.join(HERE, "db-calls.jsonl")
argv = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(json.dumps(argv) + "\n")
if os.path.exists(os.path.join(HERE, "DB-DOWN")):
    sys.stderr.write('Fatal error: exception DBus.Error.Error(_, "The name com.citrix.xenclient.db was not provided '
                     'by any .service files")\n')
    sys.exit(2)
tree = json.load(open(DB)) if os.path.exists(DB) else {}
def segments(path):
    return [s for s in path.split("/") if s != ""]
def node(path):
    n = tree
    for s in segments(path):
        if not isinstance(n, dict) or s not in n:
            return None
        n = n[s]
    return n
def do_list(path):
    n = node(path)
    return list(n) if isinstance(n, dict) else []
def do_read(path):
    n = node(path)
    return n if isinstance(n, str) else ""
def save():
    with open(DB, "w") as f:
        json.dump(tree, f)
def do_write(path, value):
    segs = segments(path)
    if segs in ([], ["vm"]):
        sys.stderr.write("Nope, not doing that.\n")
        sys.exit(1)
    n = tree
    for s in segs[:-1]:
        if not isinstance(n.get(s), dict):
            n[s] = {}
        n = n[s]
    n[segs[-1]] = value
    save()
def do_rm(path):
    segs = segments(path)
    n = tree
    for s in segs[:-1]:
        n = n.get(s) if isinstance(n, dict) else None
        if n is None:
            return
    if isinstance(n, dict):
        n.pop(segs[-1], None)
        save()
def joinpaths(a, b):
    return a + ("" if a.endswith("/") else "/") + b
def do_ls(path, full):
    def describe(indent, path):
        prefix = path if full else " " * indent + path.split("/")[-1]
        xs = do_list(path)
        if not xs:
            return prefix + ' = "' + do_read(path) + '"\n'
        return prefix + " =\n" + "".join(describe(indent + 1, joinpaths(path, x)) for x in xs)
    return describe(0, path)
def usage():
    print("Usage: db-cmd <cmd> <parameters>")
    sys.exit(1)
match argv:
    case ["ls", "-f", path]: sys.stdout.write(do_ls(path, True))
    case ["ls", "-f"]: sys.stdout.write(do_ls("/", True))
    case ["ls", path]: sys.stdout.write(do_ls(path, False))
    case ["ls"]: sys.stdout.write(do_ls("/", False))
    case ["read", path]: print(do_read(path))
    case ["write", path, value]: do_write(path, value)
    case ["nodes", path]: print(" ".join(do_list(path)))
    case ["exists", path]: print("true" if node(path) is not None else "false")
    case ["rm", path]:
        if segments(path):
            do_rm(path)
        else:
            print("bad path")
    case _: usage()
'''

# A process named rpc-proxy (its kernel comm, as /proc/PID/comm shows): it renames itself,
# then appends HUP (or USR1, the tests' barrier) to LOG for each signal; READY once armed.
RECORDER = r'''
import signal, sys
log, name = sys.argv[1], sys.argv[2]
with open("/proc/self/comm", "w") as f:
    f.write(name)
def record(word):
    def handler(signum, frame):
        with open(log, "a") as f:
            f.write(word + "\n")
    return handler
signal.signal(signal.SIGHUP, record("HUP"))
signal.signal(signal.SIGUSR1, record("USR1"))
with open(log, "a") as f:
    f.write("READY\n")
while True:
    signal.pause()
'''
WAIT_S = 30.0  # a bound for a child to answer, not a timing assertion


@dataclass
class FakeDb:
    path: Path
    here: Path

    @property
    def tree(self) -> Any:
        file = self.here / "db.json"
        return json.loads(file.read_text()) if file.exists() else {}

    def seed(self, tree: Any) -> None:
        (self.here / "db.json").write_text(json.dumps(tree))

    def calls(self) -> list[list[str]]:
        log = self.here / "db-calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def forget_calls(self) -> None:
        (self.here / "db-calls.jsonl").unlink(missing_ok=True)

    def down(self) -> None:
        (self.here / "DB-DOWN").touch()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.path), *args], capture_output=True, text=True, check=False)


class Recorder:
    """A real child whose comm is `name`; `hups()` counts the SIGHUPs it has received."""

    def __init__(self, tmp: Path, name: str = "rpc-proxy") -> None:
        self.log = tmp / f"{name}-{os.urandom(4).hex()}.log"
        self.proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(self.log), name])
        self._wait_for("READY", 1)

    def _lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def _wait_for(self, word: str, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self._lines().count(word) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"recorder never wrote {word} x{count}: {self._lines()}")
            time.sleep(0.01)

    def hups(self) -> int:
        """SIGHUPs received so far: a SIGUSR1 barrier first, so any SIGHUP already sent
        has been handled (pending signals are delivered lowest number first)."""
        barriers = self._lines().count("USR1") + 1
        os.kill(self.proc.pid, signal.SIGUSR1)
        self._wait_for("USR1", barriers)
        return self._lines().count("HUP")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def fake_db(tmp_path: Path) -> FakeDb:
    here = tmp_path / "db bin; $(touch PWNED)"  # a shell would split or run this path
    here.mkdir()
    script = here / "db-cmd"
    script.write_text(FAKE_DB_CMD.replace("__PYTHON__", sys.executable).replace("__HERE__", repr(str(here))))
    script.chmod(0o755)
    return FakeDb(script, here)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[tuple[Recorder, Recorder, Path]]:
    """An rpc-proxy and a decoy (`rpc-proxy2`), and a process table holding only them."""
    proxy, decoy = Recorder(tmp_path), Recorder(tmp_path, "rpc-proxy2")
    proc = tmp_path / "proc"
    proc.mkdir()
    for child in (proxy, decoy):
        (proc / str(child.proc.pid)).symlink_to(f"/proc/{child.proc.pid}")
    (proc / "self").symlink_to("/proc/self")
    (proc / "99999999").mkdir()  # a process that exited: no comm
    try:
        yield proxy, decoy, proc
    finally:
        proxy.stop()
        decoy.stop()


def driver(fake_db: FakeDb, proc: Path, tmp_path: Path, **settings: Any) -> DbRpcPolicy:
    return DbRpcPolicy(RpcProxySettings(db_cmd=str(fake_db.path), rules_file=tmp_path / "rpc-proxy.rules",
                                        proc_root=proc, **settings))


def test_set_writes_what_rpc_proxy_reads_and_sighups_it(fake_db: FakeDb, proxies: tuple[Recorder, Recorder, Path],
                                                        tmp_path: Path) -> None:
    proxy, decoy, proc = proxies
    fake_db.seed({"vm": {WIN: {"name": "win10", "usb-enabled": "true", "rpc-firewall-rules": {
        "0": "allow all", "1": "deny all", "2": "allow destination old"}}}})
    port: RpcPolicyPort = driver(fake_db, proc, tmp_path)

    asyncio.run(port.set(WIN, ENTRY))
    vm = fake_db.tree["vm"][WIN]
    # Where rpc-proxy's RulesCache reads (dbReadWithDefault [] /vm/<uuid>/rpc-firewall-rules):
    # the old list gone, the new one 0..n-1 in order; properties where xenmgr keeps them.
    assert vm["rpc-firewall-rules"] == {"0": RULES[0], "1": RULES[1], "2": RULES[2]}
    assert vm["domstore-read-access"] == "true" and vm["usb-control"] == "false"
    assert "usb-enabled" not in vm  # a known property the entry does not give: the whole entry is replaced
    assert vm["name"] == "win10"  # what is not the policy stays
    assert (proxy.hups(), decoy.hups()) == (1, 0)
    assert asyncio.run(port.read()) == RpcPolicy(None, {WIN: ENTRY})

    asyncio.run(port.set(WIN, RpcVmPolicy(RULES[:1])))
    assert fake_db.tree["vm"][WIN]["rpc-firewall-rules"] == {"0": RULES[0]}
    assert proxy.hups() == 2

    asyncio.run(port.clear(WIN))
    assert proxy.hups() == 3  # counted before the next: two pending SIGHUPs would be one
    asyncio.run(port.clear(WIN))  # absent: nothing to do but the reload
    assert fake_db.tree["vm"][WIN] == {"name": "win10"}
    assert asyncio.run(port.read()).vms == {}
    assert (proxy.hups(), decoy.hups()) == (4, 0)


def test_argv_goes_to_db_cmd_as_is_without_a_shell(fake_db: FakeDb, proxies: tuple[Recorder, Recorder, Path],
                                                   tmp_path: Path) -> None:
    _, _, proc = proxies
    asyncio.run(driver(fake_db, proc, tmp_path).set(UIVM, RpcVmPolicy(RULES[1:2], (("usb-control", True),))))
    base = f"/vm/{UIVM}"
    removed = [["rm", f"{base}/{name}"] for name in sorted(rpc.PROPERTY_DEFAULTS) if name != "usb-control"]
    assert sorted(fake_db.calls()) == sorted([
        ["rm", f"{base}/rpc-firewall-rules"], ["write", f"{base}/rpc-firewall-rules/0", RULES[1]],
        ["write", f"{base}/usb-control", "true"], *removed])
    assert fake_db.calls()[:2] == [["rm", f"{base}/rpc-firewall-rules"],
                                   ["write", f"{base}/rpc-firewall-rules/0", RULES[1]]]
    assert not list(tmp_path.rglob("PWNED"))  # the executable's path was never given to a shell


def test_bad_entries_are_refused_before_anything_is_written(fake_db: FakeDb, proxies: tuple[Recorder, Recorder, Path],
                                                            tmp_path: Path) -> None:
    proxy, _, proc = proxies
    port = driver(fake_db, proc, tmp_path)
    for uuid, entry, message in [
        (WIN, RpcVmPolicy((RULES[0], f"allow dom-uuid {WIN}")), f"rpc-proxy rule 2 of VM {WIN}"),
        (WIN, RpcVmPolicy(("allow dom-id 5",)), "rpc-proxy rule 1"),
        (WIN, RpcVmPolicy((), (("seamless", True),)), "property 'seamless'"),
        ("../../etc", RpcVmPolicy(RULES), "expected a lower-case uuid"),
    ]:
        with pytest.raises(TerminalHostError, match=message) as info:
            asyncio.run(port.set(uuid, entry))
        assert "\n" not in str(info.value)
    with pytest.raises(TerminalHostError, match="expected a lower-case uuid"):
        asyncio.run(port.clear("/vm"))
    assert fake_db.calls() == []
    assert proxy.hups() == 0


def test_a_failing_db_cmd_is_one_line_and_nothing_is_reloaded(fake_db: FakeDb,
                                                               proxies: tuple[Recorder, Recorder, Path],
                                                               tmp_path: Path) -> None:
    proxy, _, proc = proxies
    fake_db.down()
    port = driver(fake_db, proc, tmp_path)
    for call in (port.read(), port.set(WIN, ENTRY), port.clear(WIN)):
        with pytest.raises(TerminalHostError) as info:
            asyncio.run(call)
        text = str(info.value)
        assert text.startswith("`db-cmd ") and "failed (exit status 2): Fatal error: exception DBus.Error" in text
        assert "\n" not in text
    assert proxy.hups() == 0
    missing = DbRpcPolicy(RpcProxySettings(db_cmd=str(tmp_path / "no-db-cmd"), proc_root=proc))
    with pytest.raises(TerminalHostError, match="no-db-cmd not found"):
        asyncio.run(missing.read())
    assert not DbRpcPolicy.available(missing.settings) and DbRpcPolicy.available(driver(fake_db, proc, tmp_path).settings)


def test_the_global_rules_are_the_hosts_file_read_only(fake_db: FakeDb, proxies: tuple[Recorder, Recorder, Path],
                                                       tmp_path: Path) -> None:
    _, _, proc = proxies
    port = driver(fake_db, proc, tmp_path)
    assert asyncio.run(port.read()) == RpcPolicy(None, {})  # no file, empty DB
    (tmp_path / "rpc-proxy.rules").write_text(rpc.STOCK_RULES)
    asyncio.run(port.set(WIN, ENTRY))
    assert asyncio.run(port.read()).global_rules == rpc.STOCK_RULES
    assert (tmp_path / "rpc-proxy.rules").read_text() == rpc.STOCK_RULES


def test_the_fake_db_cmd_behaves_like_db_cmd_ml(fake_db: FakeDb) -> None:
    assert fake_db.run("write", "/vm/a/b", "x y").returncode == 0
    assert fake_db.run("write", "/vm/a/c", "").returncode == 0
    listing = fake_db.run("ls", "-f", "/vm")
    assert listing.stdout == '/vm =\n/vm/a =\n/vm/a/b = "x y"\n/vm/a/c = ""\n'
    assert fake_db.run("ls", "/vm").stdout == 'vm =\n a =\n  b = "x y"\n  c = ""\n'
    for path in ("/vm", "/", "vm/"):
        refused = fake_db.run("write", path, "x")
        assert (refused.returncode, refused.stderr) == (1, "Nope, not doing that.\n")
    assert fake_db.run("rm", "/").stdout == "bad path\n"
    usage = fake_db.run("frobnicate")
    assert (usage.returncode, usage.stdout) == (1, "Usage: db-cmd <cmd> <parameters>\n")
    assert fake_db.run("ls", "-f", "/nothing").stdout == '/nothing = ""\n'


def test_parse_ls_reads_do_ls_output_in_listing_order() -> None:
    text = (f'/vm =\n/vm/{WIN} =\n/vm/{WIN}/rpc-firewall-rules =\n'
            f'/vm/{WIN}/rpc-firewall-rules/1 = "allow all"\n/vm/{WIN}/rpc-firewall-rules/0 = "deny all"\n'
            f'/vm/{WIN}/usb-control = "yes"\n/vm/{WIN}/note = "two\nlines"\n/vm/not-a-uuid =\n'
            f'/vm/not-a-uuid/usb-control = "true"\n')
    nodes = parse_ls(text)
    assert nodes[f"/vm/{WIN}/note"] == "two\nlines"
    # dbReadWithDefault reads a list in dbd's listing order: that is the evaluation order.
    assert policy_of(nodes, None).vms == {WIN: RpcVmPolicy(("allow all", "deny all"), (("usb-control", True),))}
    with pytest.raises(TerminalHostError, match="usb-control is 'maybe', not a boolean"):
        policy_of(parse_ls(f'/vm/{WIN}/usb-control = "maybe"\n'), None)
    with pytest.raises(TerminalHostError, match="cannot read `db-cmd ls -f` output line 'garbage'"):
        parse_ls("/vm =\ngarbage\n")
    with pytest.raises(TerminalHostError, match="no closing quote"):
        parse_ls(f'/vm/{WIN}/x = "open\n')


def test_reload_signals_the_real_rpc_proxy_through_proc(fake_db: FakeDb, tmp_path: Path) -> None:
    """The default process table, /proc: the kernel's comm of a real process."""
    proxy = Recorder(tmp_path)
    try:
        port = DbRpcPolicy(RpcProxySettings(db_cmd=str(fake_db.path), rules_file=tmp_path / "none"))
        asyncio.run(port.set(WIN, ENTRY))
        assert proxy.hups() >= 1  # another rpc-proxy's reload on this machine may add one
    finally:
        proxy.stop()


def test_open_xen_composes_it_when_db_cmd_is_installed(fake_db: FakeDb, monkeypatch: pytest.MonkeyPatch) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="xen", dir="/tmp"))
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setenv("XENSTORED_RUNDIR", str(sock_dir))

    async def ports_rpc(settings: XenSettings) -> Any:
        async with XenstoreServer(Store(), sock_dir / "socket"):
            async with open_xen(settings) as ports:
                return ports.rpc

    try:
        with_db = asyncio.run(ports_rpc(XenSettings(rpcproxy=RpcProxySettings(db_cmd=str(fake_db.path)))))
        without = asyncio.run(ports_rpc(XenSettings(rpcproxy=RpcProxySettings(db_cmd=str(sock_dir / "none")))))
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert isinstance(with_db, DbRpcPolicy) and isinstance(without, NoRpcPolicy)

