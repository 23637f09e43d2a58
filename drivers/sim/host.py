"""The simulated host process: owns one state directory and serves it on two sockets.

Stage: simulated host. `SimHost.open(dir)` takes DIR/host.lock (so two processes never
both own a directory), loads DIR/xenstore.json and DIR/host.json (refusing corrupt
files), reads DIR/pci.yaml and DIR/faults.yaml, creates DIR/rpc-proxy.rules (the global
rpc-proxy rules, `drivers.sim.rpcpolicy`) when absent, serves the xenstored on
DIR/xenstored.sock and the toolstack/PCI/firewall/rpc-policy RPC on DIR/host.sock, and resumes
devices and guests a previous run left half-way. It persists on change, never by
polling: every change marks it dirty (the store calls back on each node, permission or
domain change; a toolstack/PCI/firewall/netdev call, a guest powering off on its own or a
fault counter marks the host tables) and wakes one saver task, which writes what changed
at the event loop's next turn; a burst of changes is coalesced into a few saves. Idle, it
neither wakes nor encodes. A SIGKILL of the process that embeds it (an `apply` without
`sim serve`) loses at most the step in flight. `close()` lets backend moves settle
(bounded), stops serving and saves. Used by `open_sim` and `reconciler sim serve`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from drivers.sim import settings as names
from drivers.sim.attach import Devices
from drivers.sim.backends import Backends
from drivers.sim.dispatch import READS, Dispatcher
from drivers.sim.domains import DomainTable
from drivers.sim.faults import Faults, load_faults
from drivers.sim.firewall import FirewallTable, entry_from_json
from drivers.sim.guests import Guests
from drivers.sim.netdev import NetDevTable
from drivers.sim.pci import PciTable, load_inventory
from drivers.sim.pcidev import PciDevices
from drivers.sim.rpcpolicy import GLOBAL_FILE, RpcPolicyTable, seed_global
from drivers.sim.rpc import RpcServer
from drivers.sim.settings import HostSettings, resolve_delay_scale
from drivers.sim.toolstack import Core, Libxl
from drivers.xenstore import persist
from drivers.xenstore.server import XenstoreServer
from drivers.xenstore.store import Store
from reconciler.atomic import write_text_atomic
from reconciler.errors import StateFileError, TransientHostError, UsageError
from reconciler.lockfile import open_lock_file

log = logging.getLogger(__name__)
FORMAT, VERSION = "xen-reconciler/sim-host", 1
SAVE_GAP = 4.0  # rest between saves, in multiples of the last save's duration (see _save_as_it_goes)
STATUS_OP = "host_status"  # a read answered by the host itself: its save counters (tests, benchmarks)


class DirectoryBusy(TransientHostError):
    """Another process holds DIR/host.lock (it is starting or stopping its host)."""


def lock(state_dir: Path, *, shared: bool = False) -> int:
    """Take DIR/host.lock: exclusive for the process that runs the host, shared for
    read-only views (which only wait while a host is starting, running or saving)."""
    fd = _open_lock(state_dir / names.LOCK_FILE)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryBusy(f"another process owns the simulated host in {state_dir}; "
                            "wait for it, or connect to its `sim serve`") from None
    if not shared:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _open_lock(path: Path) -> int:
    """DIR/host.lock (see `reconciler.lockfile`: never through a symlink)."""
    return open_lock_file(path, "the simulated host's lock", "the host")


def _make_directory(state_dir: Path) -> None:
    """DIR, made if missing; a file there (`--state /etc/passwd`) is one line, not a traceback."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "not a directory" if state_dir.exists() else exc.strerror or str(exc)
        raise UsageError(f"{state_dir}: cannot use it as the simulated host's state directory "
                         f"({why}); name a directory, e.g. .reconciler/sim") from None


class SimHost:
    def __init__(self, state_dir: Path, settings: HostSettings, lock_fd: int) -> None:
        self.dir, self._lock_fd = state_dir, lock_fd
        self.store = persist.load_or_new(state_dir / persist.STATE_FILE)
        plan = load_faults(state_dir / names.FAULTS_FILE)
        self._faults_mtime = _mtime(state_dir / names.FAULTS_FILE)
        domains = DomainTable()
        faults = Faults(plan)
        self.core = Core(self.store, domains, Backends(self.store, domains, settings, lambda: self.core.faults),
                         PciTable(load_inventory(state_dir / names.PCI_FILE)), FirewallTable(), settings, faults)
        self.core.rpc = RpcPolicyTable(state_dir / GLOBAL_FILE)
        dropped = self._load_state(state_dir / names.HOST_STATE)
        self.libxl = Libxl(self.core)
        self.devices = Devices(self.core)
        self.guests = Guests(self.core, self.libxl)
        self.dispatch = Dispatcher(self.core, self.libxl, self.devices, PciDevices(self.core, self.devices), self.guests,
                                   self.refresh_faults)
        self.xenstored = XenstoreServer(self.store, state_dir / names.XENSTORE_SOCKET)
        self.rpc = RpcServer(state_dir / names.HOST_SOCKET, self._call)
        # Save on change: `_dirty` wakes the saver. The host tables (domains, PCI, firewall,
        # netdevs, fault counters) are encoded only when marked changed (`_host_dirty`) or
        # while a mutating call runs (`_host_busy`: its table changes land mid-call, between
        # the xenstore writes that wake the saver); xenstore only when its change count moved.
        self._dirty = asyncio.Event()
        # Saved at start only if loading changed the tables (a domain dropped) or there
        # is no file yet: what was loaded re-encodes to what is on disk.
        self._host_dirty = dropped or not self._host_on_disk
        self._host_busy = 0
        self._saver: asyncio.Task[None] | None = None
        # What is on disk: the store's change count at the last save (-1: nothing saved
        # yet) and host.json's content, so a run that changed nothing writes nothing.
        self._saved_changes = self.store.changes if (state_dir / persist.STATE_FILE).exists() else -1
        self._saved_host = self._host_on_disk
        # Counters of the saver's work, answered by the `host_status` call: `encodes` = files
        # encoded to compare or write, `writes` = files written.
        self.encodes = self.writes = 0
        self.store.commit_fault = self._commit_fault
        self.store.on_change = self._dirty.set
        self.core.on_change = self.host_changed

    def _commit_fault(self) -> bool:
        """faults.yaml's `xenstore_transaction_end`: whether this client commit conflicts."""
        faults = self.refresh_faults()
        before = faults.counters.get("xenstore_transaction_end")
        fails = faults.decide("xenstore_transaction_end").fail
        if faults.counters.get("xenstore_transaction_end") != before:
            self.host_changed()  # the fault counters are saved with host.json
        return fails

    def host_changed(self) -> None:
        """The host tables changed outside a toolstack call (a guest powered off or
        crashed on its own, a fault counter moved): compare and save them soon."""
        self._host_dirty = True
        self._dirty.set()

    @classmethod
    async def open(cls, state_dir: Path, *, delay_scale: float | None = None,
                   settings: HostSettings | None = None) -> SimHost:
        """Lock, load and serve `state_dir`; DirectoryBusy if another process owns it."""
        state_dir = state_dir.resolve()
        longest = state_dir / names.XENSTORE_SOCKET
        if len(str(longest)) > names.SUN_PATH_MAX:
            raise UsageError(f"socket path {longest} is longer than {names.SUN_PATH_MAX} bytes; use a shorter state directory")
        _make_directory(state_dir)
        fd = lock(state_dir)
        try:
            base = settings or HostSettings()
            scale = resolve_delay_scale(delay_scale, load_faults(state_dir / names.FAULTS_FILE).delay_scale)
            host = cls(state_dir, base.with_scale(scale), fd)
            await host._start()
        except BaseException:
            os.close(fd)
            raise
        return host

    async def _start(self) -> None:
        ensure_dom0(self.store)
        seed_global(self.dir / GLOBAL_FILE)  # the host's /etc/rpc-proxy.rules, as OpenXT ships it
        await self.xenstored.start()
        try:
            await self.rpc.start()
        except BaseException:
            await self.xenstored.stop()
            raise
        # Every change sets `_dirty`; the saver writes at the loop's next turn.
        self._dirty.set()
        self._saver = asyncio.get_running_loop().create_task(self._save_as_it_goes(), name="sim-host-saver")
        resumed = self.core.backends.resume()
        for domain in list(self.core.domains.domains.values()):
            if domain.power in ("running", "paused"):
                self.guests.boot(domain)
            if domain.power == "running":  # a guest runs on while no process holds the host
                self.guests.resume_running(domain)
            self.guests.reap(domain)
        log.info("simulated host in %s: %d domains, %d devices resumed", self.dir, len(self.core.domains.domains), resumed)

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        if op == STATUS_OP:
            return self.status()
        if op in READS:  # changes nothing, unless faults.yaml counts it
            before = self.core.faults.counters.get(op)
            try:
                return await self.dispatch.call(op, args)
            finally:
                if self.core.faults.counters.get(op) != before:
                    self.host_changed()
        self._host_busy += 1  # power, PCI, firewall and netdev tables live outside xenstore
        try:
            return await self.dispatch.call(op, args)
        finally:
            self._host_busy -= 1
            self.host_changed()

    def status(self) -> dict[str, int]:
        """The saver's counters: what `host_status` answers."""
        return {"encodes": self.encodes, "writes": self.writes, "store_changes": self.store.changes}

    async def _save_as_it_goes(self) -> None:
        """Save whenever something changed, and only then: it sleeps on `_dirty` (no timer),
        so an idle host costs nothing. What one loop turn changed is saved together. A save
        blocks the loop (a 50-guest store: ~20 ms), so after one that took d the next waits
        SAVE_GAP * d: a burst of changes becomes a few saves, saving costs at most
        1/(1 + SAVE_GAP) of the host's time, and a kill loses at most the last
        (1 + SAVE_GAP) * d of work. As before, a call is answered before the save that
        holds it (the reply is written in the call's own turn, the save at a later one)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started = loop.time()
            try:
                self._save_changed()
            except OSError as exc:  # a full disk must not stop the host; the next change retries
                log.error("simulated host: cannot save %s: %s", self.dir, exc)
                self._host_dirty = True
            await asyncio.sleep(SAVE_GAP * (loop.time() - started))

    def refresh_faults(self) -> Faults:
        """Re-read DIR/faults.yaml when it changed, keeping the random sequence counters."""
        file = self.dir / names.FAULTS_FILE
        mtime = _mtime(file)
        if mtime != self._faults_mtime:
            self._faults_mtime = mtime
            self.core.faults = Faults(load_faults(file), self.core.faults.counters)
        return self.core.faults

    # -- persistence --------------------------------------------------------------

    def _load_state(self, file: Path) -> bool:
        """Load host.json; whether a domain had to be dropped (xenstore does not show it)."""
        self.core.firewall, self.core.faults.counters, self._host_on_disk = read_host_state(
            file, self.core.domains, self.core.pci, self.core.netdevs, self.core.rpc)
        dropped = [d for d in self.core.domains.domains if self.store.peek(f"/local/domain/{d}") is None]
        for domid in dropped:
            log.warning("domain %d is in %s but not in xenstore; dropped", domid, file)
            self.core.domains.remove(domid)
            self.core.netdevs.forget_domain(domid)
        return bool(dropped)

    def save(self) -> None:
        """Write whatever differs from the files (host tables compared even if not marked)."""
        self._host_dirty = True
        self._save_changed()

    def _save_changed(self) -> None:
        """Write what changed since the last save: an observe-only run writes nothing
        (saving a 1,000-guest store takes ~0.5 s). host.json is encoded only when its
        tables may have changed, and written only when its text changed. Two files,
        two renames, host.json first:
        a kill between the two then leaves a domain that xenstore does not show, which
        loading drops (the create in flight is lost), rather than xenstore nodes of a
        domain the hypervisor never had. (One file would make the pair atomic, but would
        re-encode both parts on every save and break the format readers of either file.)"""
        if self._host_dirty or self._host_busy:
            self._host_dirty = False
            self._save_host()
        if self.store.changes != self._saved_changes:
            changes = self.store.changes
            self.encodes += 1
            persist.save(self.store, self.dir / persist.STATE_FILE)
            self.writes += 1
            self._saved_changes = changes

    def _save_host(self) -> None:
        doc = {"format": FORMAT, "version": VERSION, "hypervisor": self.core.domains.dump(), "pci": self.core.pci.dump(),
               "firewall": self.core.firewall.dump(), "netdevs": self.core.netdevs.dump(),
               **({"rpc_policy": self.core.rpc.dump()} if self.core.rpc.vms else {}),
               "fault_counters": dict(sorted(self.core.faults.counters.items()))}
        self.encodes += 1
        text = host_text(doc)
        if text != self._saved_host:
            write_text_atomic(str(self.dir / names.HOST_STATE), text, mode=0o600)
            self.writes += 1
            self._saved_host = text

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set. Saving needs no timer: the saver wakes on changes."""
        await stop.wait()

    async def close(self) -> None:
        """Let pending moves settle (bounded), stop serving, save, release the directory."""
        try:
            await self.core.backends.settle(self.core.settings.settle_s)
            await self.rpc.stop()
            for task in list(self.guests.tasks):
                task.cancel()
            await asyncio.gather(*self.guests.tasks, return_exceptions=True)
            await self.xenstored.stop()
            if self._saver is not None:
                self._saver.cancel()
                await asyncio.gather(self._saver, return_exceptions=True)
            self.store.on_change = None
            self.save()
        finally:
            os.close(self._lock_fd)


def ensure_dom0(store: Store) -> None:
    """What xen-init-dom0 writes at boot (reference 2.2)."""
    if store.peek("/local/domain/0/domid") is None:
        store.write("/local/domain/0/domid", "0")
        store.write("/local/domain/0/name", "Domain-0")


def read_host_state(file: Path, domains: DomainTable, pci: PciTable, netdevs: NetDevTable | None = None,
                    rpc: RpcPolicyTable | None = None) -> tuple[FirewallTable, dict[str, int], str]:
    """DIR/host.json into the domain, PCI, vif-interface and rpc-proxy policy tables: (the
    firewall table, the fault counters, the file's content as `host_text` writes it); empty
    ones when there is no file yet."""
    if not file.exists():
        return FirewallTable(), {}, ""
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} file")
        domains.restore(doc["hypervisor"])
        pci.restore(doc.get("pci", {}))
        if netdevs is not None:
            netdevs.interfaces = NetDevTable.restore(doc.get("netdevs", [])).interfaces
        if rpc is not None:
            rpc.vms = RpcPolicyTable.restore(doc.get("rpc_policy", {})).vms
        firewall = FirewallTable(entry_from_json(e) for e in doc["firewall"])
        counters = {str(k): int(v) for k, v in doc.get("fault_counters", {}).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateFileError(f"{file}: refusing a bad simulated host state ({exc}); move it away (with "
                             f"{persist.STATE_FILE}) to start an empty host") from exc
    return firewall, counters, host_text(doc)


def host_text(doc: dict[str, Any]) -> str:
    """host.json as written: one top-level key per line; the small tables indented for
    people reading them; the firewall, which can hold 100,000s of entries, one compact
    entry per line, all in the C encoder (indenting it in pure Python took 1.2 s for
    180,000 entries, the loop blocked meanwhile)."""
    parts = []
    for key in sorted(doc):
        value = doc[key]
        if key == "firewall" and isinstance(value, list):
            # Its entries hold numbers, null and ACCEPT/REJECT: no string can contain "},{".
            entries = json.dumps(value, sort_keys=True, separators=(",", ":"))[1:-1].replace("},{", "},\n {")
            body = f"[\n {entries}\n]" if entries else "[]"
        else:
            body = json.dumps(value, indent=1, sort_keys=True)
        parts.append(f"{json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _mtime(file: Path) -> float | None:
    try:
        return file.stat().st_mtime
    except FileNotFoundError:
        return None
