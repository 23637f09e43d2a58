"""Edge rules: which step waits for which, one small named function per Xen reason.

Pure. Each rule reads a `Scene` (the plan's steps, who starts, who wakes, who stops)
and yields (before, after) step-id pairs. The rules hold whenever the plan has the
steps they order, not only when it builds the VM: a rerun that unpauses a VM a failed
attach left paused, or waits again for a sentinel that timed out, keeps the order of a
first run. `reconciler.plan.build` applies `RULES` in order; an edge keeps the name of
the first rule that made it, so `--format json` says why (and `--format dot|mermaid|svg`
print its `LABELS` words).
Starts follow OpenXT (openxt.md 5, 6.1); stops are the reverse of starts, Terraform's
destroy-edge idea:

    start:  ndvm create -> ndvm unpause -> ndvm wait-sentinel -> work-linux create
    stop:   work-linux shutdown -> work-linux destroy -> ndvm shutdown -> ndvm destroy
    ndvm restarted, work-linux kept (its NIC re-plugged, OXT-1011):
            work-linux-nic0 detach -> ndvm shutdown -> ... -> ndvm wait-sentinel -> work-linux-nic0 attach

Every edge `requires` its `before` step (a failure skips what comes after) except the
edges of `ORDERING_ONLY` rules, which only `orders` two steps: a priority says which
VM goes first, not that one needs the other (STYLE 21, Terraform's soft upstream
failure); a guest's unplug before its backend VM stops is a courtesy, not a need. The execution skips along `requires` edges only.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reconciler.model.common import Kind
from reconciler.plan.changes import HOST
from reconciler.plan.deps import Index
from reconciler.plan.priority import tiebreak
from reconciler.plan.steps import Op, Step, make, step_id

Pair = tuple[str, str]
EdgeKind = Literal["requires", "orders"]


@dataclass(frozen=True)
class Scene:
    """The steps of one plan and the lookups the rules share."""

    steps: Mapping[str, Step]
    index: Index
    starting: frozenset[str]  # VMs this plan builds (create, restart)
    stopping: frozenset[str]  # VMs this plan stops (delete, restart)
    ordered: tuple[Step, ...]  # the same steps, sorted by id
    _by: dict[tuple[str, Op], list[Step]] = field(default_factory=dict, repr=False)
    _by_op: dict[Op, list[Step]] = field(default_factory=dict, repr=False)
    _vm: dict[tuple[str, Op], str] = field(default_factory=dict, repr=False)
    unpausing: frozenset[str] = field(default=frozenset(), init=False)  # VMs with an unpause step
    waking: frozenset[str] = field(default=frozenset(), init=False)  # ... or a wait-sentinel step

    def __post_init__(self) -> None:
        by: dict[tuple[str, Op], list[Step]] = defaultdict(list)
        by_op: dict[Op, list[Step]] = defaultdict(list)
        for step in self.ordered:
            by_op[step.op].append(step)
            if step.kind != "VM":
                by[(step.vm, step.op)].append(step)
            else:
                self._vm[(step.vm, step.op)] = step.id
        self._by.update(by)
        self._by_op.update(by_op)
        unpausing = frozenset(s.vm for s in by_op.get("unpause", ()) if s.kind == "VM")
        object.__setattr__(self, "unpausing", unpausing)
        object.__setattr__(self, "waking", unpausing | {s.vm for s in by_op.get("wait-sentinel", ()) if s.kind == "VM"})

    @property
    def coming_up(self) -> frozenset[str]:
        """VMs this plan builds or brings up: what depends on them waits for `ready`."""
        return self.starting | self.waking

    def vm_step(self, vm: str, op: Op) -> str | None:
        return self._vm.get((vm, op))

    def ready(self, vm: str) -> str | None:
        """The step after which a VM coming up counts as up: its sentinel, else its unpause."""
        ops: tuple[Op, ...] = ("wait-sentinel", "unpause", "record", "create")
        for op in ops:
            found = self.vm_step(vm, op)
            if found:
                return found
        return None

    def device_steps(self, vm: str, op: Op) -> list[Step]:
        return self._by.get((vm, op), [])

    def steps_doing(self, op: Op) -> list[Step]:
        """Every step with this op, sorted by id."""
        return self._by_op.get(op, [])

    def backends_of(self, kind: Kind, name: str) -> list[str]:
        """The backend VMs a disk or NIC has: in the manifests, and on the host now."""
        observed = self.index.observed
        seen = observed.disks.get(name) if kind == "Disk" else observed.nics.get(name) if kind == "NIC" else None
        found = [self.backend_of(kind, name), seen.spec.backend_vm if seen else None]
        return sorted({b for b in found if b})

    def removed_backends(self, step: Step) -> list[str]:
        """The backend VM of the device a detach step removes, found on the host by its
        vdev or index: a removed device's step carries the name it was applied under
        (`reconciler.diff.devices.recorded_name`), which the observer does not use."""
        observed, desired, args = self.index.observed, self.index.desired, dict(step.args)
        if step.name in observed.disks or step.name in observed.nics or step.name in desired.disks or step.name in desired.nics:
            return []  # backends_of knows it
        if step.kind == "Disk":
            backends = {d.spec.backend_vm for d in observed.disks.values() if d.spec.vm == step.vm and d.spec.vdev == args.get("vdev")}
        elif step.kind == "NIC":
            backends = {n.spec.backend_vm for n in observed.nics.values() if n.spec.vm == step.vm and n.spec.index == args.get("index")}
        else:
            return []
        return sorted(b for b in backends if b)

    def backend_of(self, kind: Kind, name: str) -> str | None:
        desired = self.index.desired
        device = desired.disks.get(name) if kind == "Disk" else desired.nics.get(name) if kind == "NIC" else None
        return device.spec.backend_vm if device else None


def _pairs(befores: Sequence[str | None], afters: Sequence[str | None]) -> list[Pair]:
    return [(before, after) for before in befores if before for after in afters if after]


def pci_on_pciback_before_build(scene: Scene) -> Iterator[Pair]:
    """PCI devices must be on pciback (quarantined) before the domain that gets them is built."""
    for vm in sorted(scene.starting):
        yield from _pairs([s.id for s in scene.device_steps(vm, "pci-assignable-add")], [scene.vm_step(vm, "create")])


def pre_boot_after_needs(scene: Scene) -> Iterator[Pair]:
    """OpenXT runs run-pre-boot after its dependency checks, once what the VM needs is up
    (openxt.md 6.1): the hook may look at its backends."""
    for vm in sorted(scene.starting):
        pre_boot = scene.vm_step(vm, "pre-boot")
        if pre_boot is not None:
            yield from _pairs([scene.ready(needed) for needed in sorted(scene.index.needs(vm) & scene.coming_up)],
                              [pre_boot])


def pre_boot_before_pciback(scene: Scene) -> Iterator[Pair]:
    """A failing preBoot fails the start before dom0 loses a device to pciback for it."""
    for vm in sorted(scene.starting):
        yield from _pairs([scene.vm_step(vm, "pre-boot")], [s.id for s in scene.device_steps(vm, "pci-assignable-add")])


def devices_before_unpause(scene: Scene) -> Iterator[Pair]:
    """OpenXT unpauses a domain only once its disks, NICs and PCI devices are in place: a
    domain a failed attach left paused (one the plan builds has them from its create)."""
    for vm in sorted(scene.unpausing):
        yield from _pairs([s.id for s in scene.device_steps(vm, "attach")], [scene.vm_step(vm, "unpause")])


def _firewall(scene: Scene, vm: str) -> list[str]:
    """A VM's firewall steps: its start's batch (fw-start) and its own rules' fw-apply."""
    return [s.id for op in _FIREWALL_OPS for s in scene.device_steps(vm, op)]


_FIREWALL_OPS: tuple[Op, ...] = ("fw-start", "fw-apply")


def firewall_after_build(scene: Scene) -> Iterator[Pair]:
    """A rule's `myself`, and every rule naming the new VM, resolve to its domid once it is
    built: xenmgr applies them between build and unpause. One step per starting VM,
    so two edges per VM however many rules name it (openxt.md 4.3)."""
    for vm in sorted(scene.starting):
        yield from _pairs([scene.vm_step(vm, "create")], _firewall(scene, vm))


def firewall_before_unpause(scene: Scene) -> Iterator[Pair]:
    """v4v is default-deny: xenmgr applies a VM's rules before it unpauses it (v4v-firewall-ready)."""
    for vm in sorted(scene.unpausing):
        yield from _pairs(_firewall(scene, vm), [scene.vm_step(vm, "unpause")])


def backends_up_before_dependents(scene: Scene) -> Iterator[Pair]:
    """A frontend connects only to a running backend: a NIC's backendVM (and dependsOn) is up,
    its boot sentinel written, before dependents start or a device is hot-plugged onto it.
    A backend comes up when this plan builds it, unpauses it or waits for its sentinel."""
    up = scene.coming_up
    for vm in sorted(scene.starting | scene.unpausing):
        first = scene.vm_step(vm, "create") or scene.vm_step(vm, "unpause")
        for needed in sorted(scene.index.needs(vm) & up):
            yield from _pairs([scene.ready(needed)], [first])
    for step in scene.steps_doing("attach"):
        backend = scene.backend_of(step.kind, step.name)
        if backend in up and step.vm not in scene.starting:
            yield from _pairs([scene.ready(backend)], [step.id])


def dependents_stop_first(scene: Scene) -> Iterator[Pair]:
    """Stops run in the reverse of start order: a frontend is gone before its backend stops."""
    for vm in sorted(scene.stopping):
        for needed in sorted(scene.index.needs(vm) & scene.stopping):
            yield from _pairs([scene.vm_step(vm, "destroy")], [scene.vm_step(needed, "shutdown")])


def frontends_unplugged_before_backend_stops(scene: Scene) -> Iterator[Pair]:
    """A guest's disk or NIC served by a backend VM that stops is unplugged first, while its
    backend can still answer Closing with Closed (xenmgr disconnects the vifs a stopping
    VM serves). Only an order: if the unplug fails, the backend still stops, and the next
    plan re-plugs what it left stranded."""
    for step in scene.steps_doing("detach"):
        if step.vm in scene.stopping:
            continue  # the guest itself stops: dependents_stop_first orders that
        for backend in scene.backends_of(step.kind, step.name) or scene.removed_backends(step):
            if backend in scene.stopping:
                yield from _pairs([step.id], [scene.vm_step(backend, "shutdown")])


def shutdown_before_detach(scene: Scene) -> Iterator[Pair]:
    """Storage leaves a stopping guest only after it shut down and flushed its writes."""
    for vm in sorted(scene.stopping):
        yield from _pairs([scene.vm_step(vm, "shutdown")], [s.id for s in scene.device_steps(vm, "detach")])


def detach_before_destroy(scene: Scene) -> Iterator[Pair]:
    """Backends close cleanly (Closing -> Closed) and release images and pciback devices before destroy."""
    for vm in sorted(scene.stopping):
        yield from _pairs([s.id for s in scene.device_steps(vm, "detach")], [scene.vm_step(vm, "destroy")])


def firewall_removed_after_stop(scene: Scene) -> Iterator[Pair]:
    """xenmgr unapplies a VM's v4v entries when it has stopped, never while it still runs."""
    for vm in sorted(scene.stopping):
        yield from _pairs([scene.vm_step(vm, "destroy")], [s.id for s in scene.device_steps(vm, "fw-remove")])


_RPC_OPS: tuple[Op, ...] = ("rpc-set", "rpc-clear")


def _rpc(scene: Scene, vm: str) -> list[str]:
    """A VM's rpc-proxy step (one at most: `rpc-set` or `rpc-clear`)."""
    return [s.id for op in _RPC_OPS for s in scene.device_steps(vm, op)]


def rpc_after_build(scene: Scene) -> Iterator[Pair]:
    """A VM's rpc-proxy entry is in force while it runs only: it is written once the domain
    is built (a failed build leaves none), as xenmgr does between build and unpause."""
    for vm in sorted(scene.starting):
        yield from _pairs([scene.vm_step(vm, "create")], _rpc(scene, vm))


def rpc_before_unpause(scene: Scene) -> Iterator[Pair]:
    """rpc-proxy denies by default: a VM's rules are in force before its guest runs and
    calls dom0's services (a failed rpc-set leaves it paused, as a failed fw-start does)."""
    for vm in sorted(scene.unpausing):
        yield from _pairs(_rpc(scene, vm), [scene.vm_step(vm, "unpause")])


def rpc_removed_after_stop(scene: Scene) -> Iterator[Pair]:
    """A VM's rpc-proxy entry goes once it has stopped, never while its guest may still
    call dom0 (its v4v entries likewise)."""
    for vm in sorted(scene.stopping):
        yield from _pairs([scene.vm_step(vm, "destroy")], _rpc(scene, vm))


def pci_released_before_reuse(scene: Scene) -> Iterator[Pair]:
    """A host PCI device belongs to one domain at a time: the old owner lets go first, before
    another takes it or it goes back to its host driver (pciback unbinds no assigned device)."""
    released: dict[str, str] = {}
    for step in scene.steps_doing("detach"):  # by address: a removed rule is named as applied, not as observed
        devices = dict(step.args).get("devices") if step.kind == "PCIPassthrough" else None
        for bdf in devices if isinstance(devices, list) else []:
            released.setdefault(str(bdf), step.id)
    for device in sorted(scene.index.observed.pci.values(), key=lambda d: d.metadata.name):
        owner, bdf = device.spec.vm, device.spec.bdf
        destroy = scene.vm_step(owner, "destroy") if owner in scene.stopping else None
        if bdf and bdf not in released and destroy:
            released[bdf] = destroy
    for step in [*scene.steps_doing("pci-assignable-add"), *scene.steps_doing("pci-assignable-remove")]:
        claimed = dict(step.args).get("devices")
        for bdf in claimed if isinstance(claimed, list) else []:
            if bdf in released:
                yield released[bdf], step.id


def _start_priority(index: Index, vm: str) -> int:
    return index.desired.vms[vm].spec.start_priority


def _shutdown_priority(index: Index, vm: str) -> int:
    model = index.desired.vms.get(vm) or index.observed.vms.get(vm)
    return model.spec.shutdown_priority if model else 0


def _start_order(index: Index, starting: frozenset[str]) -> tuple[list[Pair], list[tuple[int, list[str]]]]:
    vms = sorted(starting)
    preds = {vm: index.needs(vm) & starting for vm in vms}
    return tiebreak(vms, preds, {vm: _start_priority(index, vm) for vm in vms})


def _stop_order(index: Index, stopping: frozenset[str]) -> tuple[list[Pair], list[tuple[int, list[str]]]]:
    vms = sorted(stopping)
    preds: dict[str, set[str]] = {vm: set() for vm in vms}
    for dependent in vms:  # a dependent stops before what it needs: the edges reversed
        for needed in index.needs(dependent) & stopping:
            preds[needed].add(dependent)
    return tiebreak(vms, preds, {vm: _shutdown_priority(index, vm) for vm in vms})


def _gate(phase: str, level: int) -> Step:
    return make("VM", f"({phase}-priority-{level})", HOST, "gate")


def priority_gates(index: Index, starting: frozenset[str], stopping: frozenset[str]) -> list[Step]:
    """The gate steps the tie-breaks join priority levels through, when that takes fewer
    edges than pairs (a level of many VMs after a level of many): one per level but the
    last, of starts and of stops. `reconciler.plan.build` adds them to the plan's steps."""
    gates = [_gate("start", level) for level, _ in _start_order(index, starting)[1][:-1]]
    return gates + [_gate("stop", level) for level, _ in _stop_order(index, stopping)[1][:-1]]


def _gated(layered: list[tuple[int, list[str]]], phase: str, done: Callable[[str], str | None],
           begin: Callable[[str], str | None]) -> Iterator[Pair]:
    for (level, high), (_, low) in zip(layered, layered[1:]):
        gate = _gate(phase, level).id
        yield from _pairs([done(vm) for vm in high], [gate])
        yield from _pairs([gate], [begin(vm) for vm in low])


def start_priority_tiebreak(scene: Scene) -> Iterator[Pair]:
    """OpenXT starts by start_on_boot_priority, highest first, where no dependency decides."""
    pairs, layered = _start_order(scene.index, scene.starting)
    create = functools.partial(scene.vm_step, op="create")
    for first, then in pairs:
        yield from _pairs([scene.ready(first)], [create(then)])
    yield from _gated(layered, "start", scene.ready, create)


def shutdown_priority_tiebreak(scene: Scene) -> Iterator[Pair]:
    """OpenXT stops by shutdown-priority groups, highest first, where no dependency decides."""
    pairs, layered = _stop_order(scene.index, scene.stopping)
    destroy = functools.partial(scene.vm_step, op="destroy")
    shutdown = functools.partial(scene.vm_step, op="shutdown")
    for first, then in pairs:
        yield from _pairs([destroy(first)], [shutdown(then)])
    yield from _gated(layered, "stop", destroy, shutdown)


def adopt_first(scene: Scene) -> Iterator[Pair]:
    """An adopted domain is marked the reconciler's before anything else touches it: a kill
    after the mark leaves a managed VM whose next plan shows only what is left, one before
    it leaves the adoption to do again (never a half-changed domain nobody owns)."""
    adopts = scene.steps_doing("adopt")
    if not adopts:
        return
    by_vm: dict[str, list[str]] = defaultdict(list)
    for step in scene.ordered:
        if step.op not in ("adopt", "rename"):  # a rename goes first (the VM's step order)
            by_vm[step.vm].append(step.id)
    for step in adopts:
        yield from _pairs([step.id], by_vm.get(step.vm, []))


Rule = Callable[[Scene], Iterator[Pair]]

# Applied in this order; the tie-breaks come last and only add edges the rules above allow.
RULES: tuple[Rule, ...] = (
    adopt_first,
    pci_on_pciback_before_build,
    pre_boot_after_needs,
    pre_boot_before_pciback,
    devices_before_unpause,
    firewall_after_build,
    firewall_before_unpause,
    backends_up_before_dependents,
    dependents_stop_first,
    frontends_unplugged_before_backend_stops,
    shutdown_before_detach,
    detach_before_destroy,
    firewall_removed_after_stop,
    rpc_after_build,
    rpc_before_unpause,
    rpc_removed_after_stop,
    pci_released_before_reuse,
    start_priority_tiebreak,
    shutdown_priority_tiebreak,
)

# Rules whose edges only order: the later step still runs when the earlier one failed.
ORDERING_ONLY: frozenset[str] = frozenset({start_priority_tiebreak.__name__, shutdown_priority_tiebreak.__name__,
                                          frontends_unplugged_before_backend_stops.__name__})


def edge_kind(rule: str) -> EdgeKind:
    """`orders` for the edges of an ORDERING_ONLY rule, else `requires`."""
    return "orders" if rule in ORDERING_ONLY else "requires"


STEP_ORDER = "step_order"  # the rule name of edges between the steps of one resource (reconciler.plan.build)

# What a graph prints on an edge: each rule's reason in a few words (its docstring says it
# in full). Step order needs none: an unlabelled edge is the next step of one resource.
LABELS: Mapping[str, str] = {
    STEP_ORDER: "",
    adopt_first.__name__: "adopted first",
    pci_on_pciback_before_build.__name__: "on pciback before build",
    pre_boot_after_needs.__name__: "needed VM up before pre-boot",
    pre_boot_before_pciback.__name__: "pre-boot before pciback",
    devices_before_unpause.__name__: "devices before unpause",
    firewall_after_build.__name__: "firewall after build",
    firewall_before_unpause.__name__: "firewall before unpause",
    backends_up_before_dependents.__name__: "backend VM first",
    dependents_stop_first.__name__: "dependent stops first",
    frontends_unplugged_before_backend_stops.__name__: "unplug before backend stops",
    shutdown_before_detach.__name__: "shut down before detach",
    detach_before_destroy.__name__: "detach before destroy",
    firewall_removed_after_stop.__name__: "firewall removed after stop",
    rpc_after_build.__name__: "rpc-proxy after build",
    rpc_before_unpause.__name__: "rpc-proxy before unpause",
    rpc_removed_after_stop.__name__: "rpc-proxy cleared after stop",
    pci_released_before_reuse.__name__: "device released first",
    start_priority_tiebreak.__name__: "start priority",
    shutdown_priority_tiebreak.__name__: "shutdown priority",
}
_REASONS: dict[str, str] = {
    rule.__name__: " ".join((rule.__doc__ or "").split()).split(". ", 1)[0].rstrip(".") + "." for rule in RULES}
_REASONS[STEP_ORDER] = "The steps of one resource, in the order the step table lists them."


def label(rule: str) -> str:
    """An edge's short human label: its rule's reason in a few words, never a function name
    (a rule missing from LABELS shows its name as words)."""
    return LABELS[rule] if rule in LABELS else rule.replace("_", " ")


def reason(rule: str) -> str:
    """An edge's reason in one sentence: the first of its rule's docstring."""
    return _REASONS.get(rule, "")

