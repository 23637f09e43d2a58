"""The simulated toolstack's domain lifecycle: what libxl/xl do to a domain (xen.md 2.1-2.2, 2.9).

Stage: simulated host. `Core` bundles the host's parts (store, hypervisor table,
backends, PCI table, firewall, settings, faults); `Libxl` creates domains (skeleton,
build_post, console, @introduceDomain, then the devices of the build as libxl adds a
cfg's devices: `drivers.sim.builder`), pauses, unpauses, sets memory and vCPUs,
shuts down through `control/shutdown` and destroys (devices 5 -> 6 and removed, domain
nodes removed, @releaseDomain). Device attach/detach is in `drivers.sim.attach`.
Called by `drivers.sim.host` for each RPC; the simulated guests live in `guests`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.sim import builder, stubdom
from drivers.sim.backends import Backends, DeviceRef
from drivers.sim.domains import Domain, DomainTable
from drivers.sim.faults import Faults
from drivers.sim.firewall import FirewallTable
from drivers.sim.netdev import NetDevTable
from drivers.sim.layout import build_post, console_add, device_destroy, device_remove, domain_skeleton
from drivers.sim.ops import Op, dom_path, libxl_path, vm_path
from drivers.sim.pci import PciTable
from drivers.sim.player import play
from drivers.sim.rpcpolicy import RpcPolicyTable
from drivers.sim.settings import HostSettings
from drivers.xenstore.store import Store
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model import VM, default_vm_uuid
from reconciler.model.host import Build
from reconciler.xenfmt import kib_from_mib, vdev_to_devid

HVM_VIDEORAM_MIB = 16  # libxl's default for qemu-xen stdvga; the 2019 dump shows 16384 KiB
CONSOLE_PORT, CONSOLE_RING = 2, 0xFEFFF  # event channel / gfn; nothing reads them in the sim


@dataclass
class Core:
    store: Store
    domains: DomainTable
    backends: Backends
    pci: PciTable
    firewall: FirewallTable
    settings: HostSettings
    faults: Faults
    netdevs: NetDevTable = field(default_factory=NetDevTable)  # vif interfaces in their backend domains
    rpc: RpcPolicyTable = field(default_factory=RpcPolicyTable)  # rpc-proxy's per-VM entries, global file
    locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    # Called when the host tables change outside a toolstack call (a guest powering off
    # or crashing on its own): the simulated host then saves them. No-op by default.
    on_change: Callable[[], None] = field(default=lambda: None)

    def lock(self, domid: int) -> asyncio.Lock:
        """Serializes device changes of one domain, as libxl's per-domain userdata lock."""
        return self.locks.setdefault(domid, asyncio.Lock())

    def live(self, domid: int) -> Domain:
        """A domain that exists and is running or paused (devices can change)."""
        domain = self.domains.get(domid)
        if domain.power not in ("running", "paused"):
            raise TerminalHostError(f"domain {domid} ({domain.name}) is {domain.power}; destroy it first")
        return domain

    def backend_domid(self, vm_name: str | None) -> int:
        if vm_name is None:
            return 0
        domain = self.domains.by_name(vm_name)
        if domain is None or domain.power not in ("running", "paused"):
            raise TerminalHostError(f"backend VM {vm_name} is not running; start it before attaching its devices")
        return domain.domid

    def exists(self, path: str) -> bool:
        return self.store.peek(path) is not None

    def value(self, path: str) -> str | None:
        node = self.store.peek(path)
        return None if node is None else node.value.decode("utf-8", "replace")


class Libxl:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def create(self, vm: VM, build: Build = Build(), *, paused: bool) -> int:
        core, spec, name = self.core, vm.spec, vm.metadata.name
        uuid = spec.uuid or default_vm_uuid(name)
        if (other := core.domains.by_name(name)) is not None:
            raise TerminalHostError(f"a domain named {name} already exists (domid {other.domid}); destroy it first")
        if (other := core.domains.by_uuid(uuid)) is not None:
            raise TerminalHostError(f"domain {other.name} (domid {other.domid}) already has uuid {uuid}")
        builder.refusal(core, vm, build)  # what libxl refuses fails before the domain exists
        domid = core.domains.allocate()
        video_mib = (spec.hvm.videoram if spec.hvm and spec.hvm.videoram else HVM_VIDEORAM_MIB) if spec.virt == "hvm" else 0
        max_vcpus = spec.max_vcpus or spec.vcpus
        domain = Domain(domid, name, uuid, spec.virt, "paused", kib_from_mib(spec.max_memory or spec.memory),
                        kib_from_mib(spec.memory), kib_from_mib(video_mib), spec.vcpus, max_vcpus,
                        spec.lifecycle.on_poweroff, spec.lifecycle.on_crash, spec.boot_sentinel,
                        passthrough=bool(build.pci), built=built_with(build))
        core.domains.add(domain)
        play(core.store, domain_skeleton(domid, name, uuid, spec.virt))
        play(core.store, build_post(
            domid, uuid, spec.virt, max_memkb=domain.max_memkb, target_memkb=domain.target_memkb,
            videoram_kb=domain.videoram_kb, max_vcpus=max_vcpus, online_vcpus=spec.vcpus, start_time=time.time(),
            kernel=spec.kernel, ramdisk=spec.ramdisk, cmdline=spec.cmdline))
        vnc = (spec.display.vnc_listen, 5900 + domid) if spec.display.type == "vnc" else None
        play(core.store, console_add(domid, port=CONSOLE_PORT, ring_ref=CONSOLE_RING,
                                     console_type="ioemu" if spec.virt == "hvm" else "xenconsoled", vnc=vnc))
        core.backends.start(DeviceRef(domid, "console", 0), "add")
        core.store.introduce_domain(domid)
        await self._build_devices(domain, build)
        await stubdom.build(self, vm, domid)  # `<vm>-dm` for an HVM guest with stubdom.enabled, as libxl builds it
        if not paused:
            domain.set_power("running")
        return domid

    async def _build_devices(self, domain: Domain, build: Build) -> None:
        """The cfg's devices, as libxl adds them at create (`drivers.sim.builder`): each
        add transaction played, the backends started, and back once every one is up
        (hotplug done; Connected too when the guest runs). On a timeout xl destroys the
        half-built domain: so does this, and the create fails as transient."""
        core, jobs = self.core, []
        for ops, ref in builder.device_ops(core, domain, build):
            play(core.store, ops)
            jobs.append(core.backends.start(ref, "add"))
        builder.plug(core, domain, build)
        if not jobs:
            return
        timeout = core.settings.scaled(core.settings.attach_timeout_s)
        waits = [asyncio.ensure_future(job.attached(domain)) for job in jobs]
        done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
        for wait in pending:
            wait.cancel()
        failed = next((w.exception() for w in done if w.exception() is not None), None)
        if pending or failed is not None:
            await self.destroy(domain.domid)
            if failed is not None:
                raise failed
            raise TransientHostError(
                f"create of {domain.name}: a device's backend did not connect within {timeout:g} s (hotplug script or "
                "backend stuck); the domain was destroyed, as xl does, retry the create")

    async def pause(self, domid: int) -> None:
        self.core.live(domid).set_power("paused")

    async def unpause(self, domid: int) -> Domain:
        domain = self.core.live(domid)
        domain.set_power("running")
        return domain

    async def mem_set(self, domid: int, mib: int) -> None:
        domain = self.core.live(domid)
        kib = kib_from_mib(mib)
        if kib > domain.max_memkb:
            raise TerminalHostError(f"memory_set: {mib} MiB is above the static maximum of domain {domid} "
                                    f"({domain.max_memkb // 1024} MiB); raise maxMemory (needs a restart)")
        if mib < 1:
            raise TerminalHostError(f"memory_set: {mib} MiB is too small; give at least 1 MiB")
        domain.target_memkb = kib
        play(self.core.store, [Op("write", f"{dom_path(domid)}/memory/target", str(kib - domain.videoram_kb))])

    async def rename(self, domid: int, name: str) -> None:
        """`libxl_domain_rename`: the domain's name nodes, and its stub domain's."""
        core = self.core
        domain = core.domains.get(domid)
        if (other := core.domains.by_name(name)) is not None and other.domid != domid:
            raise TerminalHostError(f"rename of domain {domid}: a domain named {name} already exists (domid {other.domid})")
        domain.name = name
        play(core.store, [Op("write", f"{dom_path(domid)}/name", name), Op("write", f"{vm_path(domain.uuid)}/name", name)])
        stubdom.renamed(core, domid, name)
        core.on_change()

    async def vcpu_set(self, domid: int, count: int) -> None:
        domain = self.core.live(domid)
        if not 1 <= count <= domain.max_vcpus:
            raise TerminalHostError(f"vcpu-set: {count} is not in 1..{domain.max_vcpus} (maxVcpus of domain {domid})")
        domain.vcpus = count
        cpu = f"{dom_path(domid)}/cpu"
        play(self.core.store, [Op("write", f"{cpu}/{i}/availability", "online" if i < count else "offline")
                               for i in range(domain.max_vcpus)])

    async def shutdown(self, domid: int, *, timeout: float) -> None:
        """Write `control/shutdown=poweroff`; wait until the domain is gone (the guest's job)."""
        domain = self.core.domains.get(domid)
        if domain.power in ("running", "paused"):
            play(self.core.store, [Op("write", f"{dom_path(domid)}/control/shutdown", "poweroff")])
        deadline = asyncio.get_running_loop().time() + timeout
        while domid in self.core.domains.domains and domain.power not in ("shutdown", "crashed", "rebooted"):
            if asyncio.get_running_loop().time() >= deadline:
                raise TransientHostError(
                    f"domain {domid} ({domain.name}) did not shut down within {timeout:g} s: the guest did not "
                    "acknowledge control/shutdown; retry, or destroy it")
            await asyncio.sleep(min(0.01, timeout / 10) + self.core.settings.ms(5))
        if domid in self.core.domains.domains and domain.power == "shutdown" and domain.on_poweroff != "destroy":
            return  # `preserve`: stays in the shutdown state, as xl leaves it
        if domid in self.core.domains.domains and domain.power in ("crashed", "rebooted"):
            return  # already dead (a crash the toolstack left, a reboot: xl shutdown -w reports it at once)
        while domid in self.core.domains.domains:  # the toolstack is reaping it
            await asyncio.sleep(self.core.settings.ms(5) + 0.001)

    async def destroy(self, domid: int) -> None:
        """`xl destroy`: every device closed and removed, then the domain's nodes, then @releaseDomain."""
        core = self.core
        domain = core.domains.get(domid)
        if domain.power == "dying":
            while domid in core.domains.domains:
                await asyncio.sleep(core.settings.ms(5) + 0.001)
            return
        domain.set_power("dying")
        await stubdom.destroy(self, domid)  # libxl__destroy_domid: the device model (its stub domain) goes first
        refs = self._devices(domid)
        jobs = []
        for ref in refs:
            back = ref.paths[1]
            state = core.value(f"{back}/state")
            play(core.store, device_remove(domid, ref.kind, ref.devid, backend_state=int(state) if state and state.isdigit() else None,
                                           backend_domid=ref.backend_domid, backend_kind=ref.backend_kind))
            jobs.append(core.backends.start(ref, "remove", guest_gone=True))
        waits = [asyncio.ensure_future(j.finished_wait()) for j in jobs]
        if waits:
            await asyncio.wait(waits, timeout=core.settings.scaled(core.settings.destroy_timeout_s))
            for w in waits:
                w.cancel()
        for ref in refs:  # forced removal for whatever did not reach Closed in time
            core.backends.cancel(ref.paths[1])
            play(core.store, device_destroy(domid, ref.kind, ref.devid, backend_domid=ref.backend_domid,
                                            backend_kind=ref.backend_kind))
        self._release(domain)

    def _release(self, domain: Domain) -> None:
        core, domid = self.core, domain.domid
        ops = [Op("rm", f"/libxl/pci/{key}/domid") for key in self._pci_keys(domid)]
        ops += [Op("rm", dom_path(domid)), Op("rm", vm_path(domain.uuid)), Op("rm", libxl_path(domid))]
        play(core.store, ops)
        if core.store.is_introduced(domid):
            core.store.release_domain(domid)
        core.domains.remove(domid)
        core.netdevs.forget_domain(domid)
        core.locks.pop(domid, None)

    def _pci_keys(self, domid: int) -> list[str]:
        keys = []
        for key in _children(self.core.store, "/libxl/pci"):
            if self.core.value(f"/libxl/pci/{key}/domid") == str(domid):
                keys.append(key)
        return keys

    def _devices(self, domid: int) -> list[DeviceRef]:
        """What libxl__devices_destroy finds: the /libxl/<D>/device copies, plus the pci backend."""
        core, refs = self.core, []
        base = f"{libxl_path(domid)}/device"
        for kind in _children(core.store, base):
            for devid in _children(core.store, f"{base}/{kind}"):
                back = core.value(f"{base}/{kind}/{devid}/backend") or ""
                parts = back.split("/")  # /local/domain/<B>/backend/<bkind>/<D>/<devid>
                if len(parts) == 8 and parts[3].isdigit() and devid.isdigit():
                    refs.append(DeviceRef(domid, kind, int(devid), int(parts[3]), parts[5]))
        if core.exists(f"/local/domain/0/backend/pci/{domid}/0"):
            refs.append(DeviceRef(domid, "pci", 0))
        return refs


def built_with(build: Build) -> list[str]:
    """`Domain.built` of a build: its disks and NICs as `vbd/<devid>`, `vif/<devid>`."""
    return [f"vbd/{vdev_to_devid(d.spec.vdev)}" for d in build.disks] + \
        [f"vif/{i if n.spec.index is None else n.spec.index}" for i, n in enumerate(build.nics)]


def _children(store: Store, path: str) -> tuple[str, ...]:
    node = store.peek(path)
    return node.children if node is not None else ()
