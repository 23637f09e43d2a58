"""The simulated hypervisor's domain table: what `xl list` shows and xenstore cannot.

Stage: simulated host. `DomainTable` allocates domids as Xen does (counting up from 1,
never reusing one until the counter wraps), and keeps per domain its power state,
memory and vCPUs, plus the few config facts the toolstack needs later (virt, video
RAM, lifecycle actions). Persisted as part of DIR/host.json by `drivers.sim.host`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields
from typing import Any, get_args

from drivers.sim.ops import Virt
from reconciler.errors import TerminalHostError
from reconciler.model.host import DomainPower, DomainStatus

DOMID_FIRST_RESERVED = 0x7FF0  # DOMID_FIRST_RESERVED in xen/include/public/xen.h
_POWERS = get_args(DomainPower)
_VIRTS = get_args(Virt)


@dataclass
class Domain:
    domid: int
    name: str
    uuid: str
    virt: Virt
    power: DomainPower
    max_memkb: int
    target_memkb: int  # what the guest was given; xenstore shows it minus video RAM
    videoram_kb: int
    vcpus: int
    max_vcpus: int
    on_poweroff: str = "destroy"
    on_crash: str = "destroy"
    boot_sentinel: str | None = None  # node under /local/domain/<domid> the guest fills once up
    passthrough: bool = False  # built with a PCI device (libxl enables passthrough then); old state: False
    # Devices the domain was built with (`vbd/<devid>`, `vif/<devid>`): QEMU has its emulated
    # ones from the build, so re-plugging their PV half is allowed (drivers.sim.attach).
    built: list[str] = field(default_factory=list)
    # Set while the domain runs: guest frontends and the guest's shutdown handler wait on it.
    awake: asyncio.Event = field(default_factory=asyncio.Event, compare=False, repr=False)

    def status(self) -> DomainStatus:
        return DomainStatus(self.domid, self.name, self.uuid, self.power, self.target_memkb // 1024, self.vcpus,
                            self.passthrough)

    def set_power(self, power: DomainPower) -> None:
        self.power = power
        if power == "running":
            self.awake.set()
        else:
            self.awake.clear()

    def dump(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "awake"}

    @classmethod
    def load(cls, doc: Any) -> Domain:
        if not isinstance(doc, dict):
            raise ValueError(f"expected a domain object, found {doc!r}")
        known = {f.name for f in fields(cls)} - {"awake"}  # an older state's `ran` is dropped
        domain = cls(**{k: v for k, v in doc.items() if k in known})
        if domain.power not in _POWERS or domain.virt not in _VIRTS:
            raise ValueError(f"domain {domain.domid}: bad power {domain.power!r} or virt {domain.virt!r}")
        domain.set_power(domain.power)
        return domain


class DomainTable:
    def __init__(self) -> None:
        self.domains: dict[int, Domain] = {}
        self.next_domid = 1

    def allocate(self) -> int:
        """The next free domid, counting up and wrapping below the reserved range."""
        for _ in range(DOMID_FIRST_RESERVED):
            domid = self.next_domid
            self.next_domid = domid + 1 if domid + 1 < DOMID_FIRST_RESERVED else 1
            if domid not in self.domains:
                return domid
        raise TerminalHostError("the simulated hypervisor has no free domid left; destroy some domains")

    def add(self, domain: Domain) -> None:
        self.domains[domain.domid] = domain

    def get(self, domid: int) -> Domain:
        domain = self.domains.get(domid)
        if domain is None:
            raise TerminalHostError(f"{domid} is an invalid domain identifier (no such domain); list them with `sim list`")
        return domain

    def by_name(self, name: str) -> Domain | None:
        return next((d for d in self.domains.values() if d.name == name), None)

    def by_uuid(self, uuid: str) -> Domain | None:
        return next((d for d in self.domains.values() if d.uuid == uuid), None)

    def remove(self, domid: int) -> None:
        self.domains.pop(domid, None)

    def statuses(self) -> list[DomainStatus]:
        return [self.domains[d].status() for d in sorted(self.domains)]

    def dump(self) -> dict[str, Any]:
        return {"next_domid": self.next_domid, "domains": [self.domains[d].dump() for d in sorted(self.domains)]}

    def restore(self, doc: Any) -> None:
        if not isinstance(doc, dict) or not isinstance(doc.get("next_domid"), int):
            raise ValueError("the domain table needs next_domid and domains")
        self.next_domid = doc["next_domid"]
        self.domains = {}
        for item in doc.get("domains", []):
            domain = Domain.load(item)
            self.domains[domain.domid] = domain
