"""The simulated host's device-model stub domains: what libxl builds for an HVM guest whose
device model runs in a stub domain (`libxl__spawn_stub_dm`, xl.cfg
`device_model_stubdomain_override`; our `stubdom.enabled`).

Stage: simulated host. `build` is called by `Libxl.create` once the guest's domain is
built, `destroy` by `Libxl.destroy` before the guest's devices go, as
`libxl__destroy_domid` destroys the device model first; a guest that powers off or
crashes and is reaped takes its stub domain with it the same way (a preserved guest
keeps it, as its QEMU would run on; `renamed` follows xl's rename-restart, called by
`guests`). The stub domain is a PV domain named `<guest>-dm` (`libxl__stub_dm_name`)
with a uuid of its own (derived from the guest's, where libxl draws a random one), one
vCPU, the manifest's stub domain memory, the MiniOS ioemu kernel and cmdline
` -d <guest domid>`, running at once (the device model must run before the guest is
unpaused), listed by `xl list` like any domain. Written as libxl writes them: the stub
domain's skeleton, build and console nodes, `/local/domain/<stub>/target` = guest
domid, the guest's `/local/domain/<guest>/image/device-model-domid` = stub domid (what
`libxl_get_stubdom_id` and OpenXT's xenmgr read, and what makes `my-stubdom` v4v rules
resolve), and `/local/domain/0/device-model/<guest>` (owned by the stub domain,
readable by the guest).

Not modelled: the stub domain's copies of the guest's disks and NICs and its save/restore
consoles, `image/dmargs`, xenstored's SET_TARGET privilege (the stub domain gets no
access to the guest's nodes), and no QEMU runs in it.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from typing import TYPE_CHECKING

from drivers.sim.backends import DeviceRef
from drivers.sim.domains import Domain
from drivers.sim.layout import build_post, console_add, domain_skeleton
from drivers.sim.ops import Op, dom_path, mkdir, vm_path
from drivers.sim.player import play
from reconciler.errors import TerminalHostError
from reconciler.model import VM
from reconciler.xenfmt import kib_from_mib

if TYPE_CHECKING:
    from drivers.sim.toolstack import Core, Libxl

KERNEL = "/usr/lib/xen/boot/ioemu-stubdom.gz"  # libxl's MiniOS stub domain image (xenfirmwaredir)
CONSOLE_PORT, CONSOLE_RING = 2, 0xFEFFF  # placeholders, as the guest's console


def stub_name(guest: str) -> str:
    """libxl__stub_dm_name: the stub domain of guest `guest`."""
    return f"{guest}-dm"


def wanted(vm: VM) -> bool:
    """Whether libxl builds a stub domain for this VM: HVM with `stubdom.enabled`."""
    return vm.spec.virt == "hvm" and vm.spec.stubdom is not None and vm.spec.stubdom.enabled


def stub_of(core: Core, guest_domid: int) -> int | None:
    """The guest's stub domain domid, as libxl_get_stubdom_id reads it (None: no stub domain)."""
    text = core.value(f"{dom_path(guest_domid)}/image/device-model-domid")
    return int(text) if text is not None and text.isdigit() and int(text) != 0 else None


async def build(libxl: Libxl, vm: VM, guest_domid: int) -> None:
    """Build `<guest>-dm` for guest `guest_domid` when the VM asks for one; a stub domain
    that cannot be built (its name taken) fails the guest's create, and libxl destroys
    the half-built guest."""
    if not wanted(vm) or vm.spec.stubdom is None:
        return
    core, name = libxl.core, stub_name(vm.metadata.name)
    if (other := core.domains.by_name(name)) is not None:
        await libxl.destroy(guest_domid)
        raise TerminalHostError(f"cannot build the stub domain of {vm.metadata.name}: a domain named {name} already "
                                f"exists (domid {other.domid}); destroy it first")
    guest = core.domains.get(guest_domid)
    # libxl draws a random uuid; derived from the guest's here, so a simulated host's
    # state (and the plans that fingerprint it) comes out the same on every run.
    uuid = str(uuid_mod.uuid5(uuid_mod.UUID(guest.uuid), "device-model stub domain"))
    domid, memkb = core.domains.allocate(), kib_from_mib(vm.spec.stubdom.memory)
    domain = Domain(domid, name, uuid, "pv", "running", memkb, memkb, 0, 1, 1)
    core.domains.add(domain)
    play(core.store, domain_skeleton(domid, name, uuid, "pv"))
    play(core.store, build_post(domid, uuid, "pv", max_memkb=memkb, target_memkb=memkb, videoram_kb=0, max_vcpus=1,
                                online_vcpus=1, start_time=time.time(), kernel=KERNEL, cmdline=f" -d {guest_domid}"))
    play(core.store, console_add(domid, port=CONSOLE_PORT, ring_ref=CONSOLE_RING))
    core.backends.start(DeviceRef(domid, "console", 0), "add")
    core.store.introduce_domain(domid)
    play(core.store, [
        Op("write", f"{dom_path(guest_domid)}/image/device-model-domid", str(domid)),
        Op("write", f"{dom_path(domid)}/target", str(guest_domid)),
        *mkdir(f"{dom_path(0)}/device-model/{guest_domid}", (f"n{domid}", f"r{guest_domid}")),
    ])
    domain.set_power("running")


async def destroy(libxl: Libxl, guest_domid: int) -> None:
    """The guest is being destroyed: its stub domain goes first, then the device-model node."""
    stub, node = stub_of(libxl.core, guest_domid), f"{dom_path(0)}/device-model/{guest_domid}"
    if stub is not None and stub in libxl.core.domains.domains and stub != guest_domid:
        await libxl.destroy(stub)
    if libxl.core.exists(node):
        play(libxl.core.store, [Op("rm", node)])


def renamed(core: Core, guest_domid: int, guest_name: str) -> None:
    """The guest was renamed (xl's rename-restart, `libxl_domain_preserve`): as
    `libxl__domain_rename` does, its stub domain becomes `<new name>-dm`, which frees
    `<old name>-dm` for the guest built again under the old name."""
    stub = stub_of(core, guest_domid)
    domain = core.domains.domains.get(stub) if stub is not None else None
    if domain is None:
        return
    domain.name = stub_name(guest_name)
    play(core.store, [Op("write", f"{dom_path(domain.domid)}/name", domain.name),
                      Op("write", f"{vm_path(domain.uuid)}/name", domain.name)])
