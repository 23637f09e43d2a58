"""The simulated guests: what a PV guest kernel does with `control/shutdown`, and crashes.

Stage: simulated host. Each live domain's guest watches its `control/shutdown` node
in the store (so a `xenstore-write` from Xen's tools works too). While the domain runs
it acknowledges a request after `guest_ack_ms` (writes "" back), powers off after
`guest_poweroff_ms`, and the toolstack reaps it per `on_poweroff`. A guest with a
`bootSentinel` writes that node ("1") `guest_boot_ms` after it first runs, as OpenXT's
network-slave writes `booted`. `uncooperative` guests ignore requests, `silent` ones
never write their sentinel; `crash_after_unpause` domains crash (faults.yaml), and
`crash` crashes one on demand (`reconciler sim crash NAME`).

A reboot (a `reboot` request, or `reboot` on demand: `reconciler sim reboot NAME`, the
guest rebooting itself) is modelled as a host without xl's background monitor sees it
(the reconciler builds domains with `xl create -e`): the guest shuts down with reason
reboot (`xl list` state `---sr-`, power `rebooted`), @releaseDomain fires, and the domain
stays until someone destroys it; nothing builds it again (the reconciler does, per
`lifecycle.onReboot`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuid_mod
from collections.abc import Coroutine
from typing import Any, Literal

from drivers.sim import stubdom
from drivers.sim.domains import Domain
from drivers.sim.ops import Op, dom_path, vm_path
from drivers.sim.player import play
from drivers.sim.toolstack import Core, Libxl
from drivers.xenstore.store import CallbackWatcher
from reconciler.errors import TerminalHostError
from reconciler.ports import WatchEvent

log = logging.getLogger(__name__)
REQUESTS = ("poweroff", "reboot", "halt")  # reboot: shut down with reason reboot, kept (no xl monitor)


class Guests:
    def __init__(self, core: Core, libxl: Libxl) -> None:
        self.core, self.libxl = core, libxl
        self._watchers: dict[int, CallbackWatcher] = {}
        self._busy: set[int] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def boot(self, domain: Domain) -> None:
        """The guest starts listening for shutdown requests (at create, or after a restart)."""
        domid = domain.domid
        if domid in self._watchers:
            return
        watcher = CallbackWatcher(lambda event: self._on_event(domid, event))
        self._watchers[domid] = watcher
        self.core.store.add_watch(watcher, f"{dom_path(domid)}/control/shutdown", f"guest-{domid}")
        self._on_event(domid, None)  # a request written while we were not running

    def forget(self, domid: int) -> None:
        watcher = self._watchers.pop(domid, None)
        if watcher is not None:
            self.core.store.remove_watches(watcher)
        self._busy.discard(domid)

    def unpaused(self, domain: Domain) -> None:
        if self.core.faults.crashes(domain.name):
            self._spawn(self._crash(domain))
        if domain.boot_sentinel and not self.core.faults.never_boots(domain.name):
            self._spawn(self._boot(domain, domain.boot_sentinel))

    def resume_running(self, domain: Domain) -> None:
        """A running guest of a host loaded from disk: a real guest kept booting while the
        process that embedded this host was gone (killed between unpause and the sentinel),
        so it still writes its sentinel if it has not yet."""
        if domain.boot_sentinel and not self.core.faults.never_boots(domain.name):
            self._spawn(self._boot(domain, domain.boot_sentinel))

    async def _boot(self, domain: Domain, node: str) -> None:
        await asyncio.sleep(self.core.settings.ms(self.core.settings.guest_boot_ms))
        path = f"{dom_path(domain.domid)}/{node}"
        if self.core.domains.domains.get(domain.domid) is domain and domain.power == "running" and not self.core.value(path):
            play(self.core.store, [Op("write", path, "1")])

    def reap(self, domain: Domain) -> None:
        """A domain a previous run left shut down or dying: finish what the toolstack started."""
        if domain.power == "dying" or (domain.power == "shutdown" and domain.on_poweroff != "preserve"):
            self._spawn(self._destroy(domain.domid))

    def _on_event(self, domid: int, event: WatchEvent | None) -> None:
        request = self.core.value(f"{dom_path(domid)}/control/shutdown")
        domain = self.core.domains.domains.get(domid)
        if request in REQUESTS and domain is not None and domid not in self._busy:
            self._busy.add(domid)
            self._spawn(self._shutdown(domain, request or ""))

    async def _shutdown(self, domain: Domain, request: str) -> None:
        settings, domid = self.core.settings, domain.domid
        try:
            await asyncio.sleep(settings.ms(settings.guest_ack_ms))
            await domain.awake.wait()  # a paused guest cannot answer
            if self.core.faults.ignores_shutdown(domain.name) or domid not in self.core.domains.domains:
                return
            play(self.core.store, [Op("write", f"{dom_path(domid)}/control/shutdown", "")])
            await asyncio.sleep(settings.ms(settings.guest_poweroff_ms))
            if self.core.domains.domains.get(domid) is not domain or domain.power != "running":
                return
            if request == "reboot":
                self._power_down(domain, "rebooted")
                log.info("domain %d (%s) shut down to reboot; kept for the toolstack", domid, domain.name)
                return
            self._power_down(domain, "shutdown")
            log.info("domain %d (%s) powered off after %s", domid, domain.name, request)
            if domain.on_poweroff != "preserve":
                await self._destroy(domid)
        finally:
            self._busy.discard(domid)

    async def _crash(self, domain: Domain) -> None:
        after = self.core.faults.plan.crash_after_ms
        await asyncio.sleep(self.core.settings.ms(self.core.settings.crash_after_ms if after is None else after))
        if self.core.domains.domains.get(domain.domid) is not domain or domain.power != "running":
            return
        await self.crash(domain, why="fault injected")

    async def crash(self, domain: Domain, *, why: str, handled: bool = True) -> None:
        """The guest crashes now. With `handled`, the toolstack applies `onCrash` as xl's
        domain-death handling does (xl_vmcontrol.c, handle_domain_death): `preserve` keeps
        the crashed domain; `rename-restart` keeps it under a new name and uuid;
        `destroy`, `restart` and their `coredump-` forms destroy it. xl then builds the restart kinds again from the config it created the
        domain with; the sim keeps no such config (as for reboot), so that rebuild is the
        reconciler's next pass, and no core file is written. Without `handled` the domain
        stays crashed whatever `onCrash` says: what a pass sees before the toolstack acts,
        or on a host where no xl process watches the domain (`xl create -e`, xl killed)."""
        if domain.power not in ("running", "paused"):
            raise TerminalHostError(f"domain {domain.domid} ({domain.name}) is {domain.power}: only a live domain can crash")
        self._power_down(domain, "crashed")
        log.info("domain %d (%s) crashed (%s)", domain.domid, domain.name, why)
        if handled and domain.on_crash == "rename-restart":
            self._preserve_renamed(domain)
        elif handled and domain.on_crash != "preserve":
            await self._destroy(domain.domid)

    def reboot(self, domain: Domain) -> None:
        """The guest reboots now (`reboot` inside it): the domain shuts down with reason
        reboot and stays, as no xl monitor waits for it (see the module docstring)."""
        if domain.power != "running":
            raise TerminalHostError(f"domain {domain.domid} ({domain.name}) is {domain.power}: only a running guest can reboot itself")
        self._power_down(domain, "rebooted")
        log.info("domain %d (%s) rebooted; kept shut down (reason reboot) for the toolstack", domain.domid, domain.name)

    def _power_down(self, domain: Domain, power: Literal["shutdown", "crashed", "rebooted"]) -> None:
        """The guest stopped on its own (powered off, crashed or rebooted): Xen sets the domain's
        shutdown flag and raises VIRQ_DOM_EXC, on which xenstored fires @releaseDomain
        (`Store.shutdown_domain`) before any toolstack acts on `onPoweroff`/`onCrash`."""
        domain.set_power(power)
        self.core.store.shutdown_domain(domain.domid)
        self.core.on_change()

    def _preserve_renamed(self, domain: Domain) -> None:
        """xl's `rename-restart` (`libxl_domain_preserve`): the crashed domain is kept under
        `<name>-<YYYYmmddTHHMM>Z` with a new uuid (`/local/domain/<d>/vm` names a new
        `/vm/<uuid>`; the old one is left), so the name is free for the rebuild."""
        old_vm = vm_path(domain.uuid)
        domain.name = f"{domain.name}{time.strftime('-%Y%m%dT%H%MZ', time.gmtime())}"
        domain.uuid = str(uuid_mod.uuid4())
        vm, dom = vm_path(domain.uuid), dom_path(domain.domid)
        play(self.core.store, [Op("write", f"{dom}/vm", vm), Op("write", f"{dom}/name", domain.name),
                               Op("write", f"{vm}/uuid", domain.uuid), Op("write", f"{vm}/name", domain.name)])
        stubdom.renamed(self.core, domain.domid, domain.name)  # libxl__domain_rename renames `<name>-dm` too
        self.core.on_change()
        log.info("domain %d preserved as %s (was under %s)", domain.domid, domain.name, old_vm)

    async def _destroy(self, domid: int) -> None:
        if domid in self.core.domains.domains:
            await self.libxl.destroy(domid)
            self.core.on_change()
        self.forget(domid)
