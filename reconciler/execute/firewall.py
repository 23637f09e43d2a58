"""Firewall ops of the op table: insert what a VM's start or a v4v rule resolves to now,
delete stale entries, and keep the table's own shape (foreign entries out, the default
REJECT last).

Touches the host through the ports in `Runtime` only. Called through
`reconciler.execute.ops.OPS`. Entries are resolved when their step runs, against the
domains running at that moment (`Runtime.running`), with the pure resolver the diff
uses (`reconciler.diff.firewall`): the domids of VMs this run built exist only now.
`fw-start` is one VM's start, as xenmgr's applyVmFirewallRules (openxt.md 4.3): its own
rules and the entries of other running VMs' rules with it on one side, found through
an index of the rules by what they name (`RuleIndex`, built once per run), inserted in
one batch (`FirewallPort.insert_many`).

The table is listed once per run and kept current with this run's changes
(`Runtime.firewall`, in order, copies counted). Only the decision is atomic: under
`firewall_lock` a step resolves, picks the entries the copy lacks and reserves them in
the copy (so two steps never insert one entry twice); the port call runs outside the
lock, so the batches of concurrent starts overlap. A change that fails drops the copy,
and the next step lists the table again (counting in what other steps have in flight).
Two VMs starting at once each see the other: a batch is decided after its own VM's
build, against a running set that holds every VM this run has built (the listing
replays the run's own creates), so of two batches the later one sees both VMs. `fw-table` removes what no rule
derives and keeps the default REJECT last, all under the lock (its order matters).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from reconciler.diff.firewall import EntryKey, RuleIndex, RunningIndex, rule_keys
from reconciler.errors import TerminalHostError
from reconciler.execute.runtime import Runtime, TableCopy, arg
from reconciler.model.host import FirewallEntry
from reconciler.plan.steps import Step

DEFAULT = FirewallEntry(target="REJECT")  # xenmgr's default deny, the table's last entry
DOM0 = FirewallEntry(dom_in=0, dom_out=0)  # xenmgr's dom0<->dom0 ACCEPT, laid on a bare table


def parse_entry(text: str) -> FirewallEntry:
    """An entry as plans carry it (`str(FirewallEntry)`); TerminalHostError naming the text otherwise."""
    try:
        return FirewallEntry.parse(text)
    except ValueError as exc:
        raise TerminalHostError(f"the plan holds a firewall entry {text!r} that is not viptables options; "
                                "run plan again") from exc


async def _view(rt: Runtime) -> RunningIndex:
    """The running set, indexed once per listing. It holds every domain this run has
    built: the run's listing replays its own creates, also onto a listing read while a
    build was still under way (`Runtime.domains`). Call under `firewall_lock`."""
    running = await rt.running()
    if rt.fw_index is None or rt.fw_index[0] is not running:
        rt.fw_index = (running, RunningIndex(running))
    return rt.fw_index[1]


def _order(key: EntryKey) -> tuple[int, ...]:
    return tuple(-1 if v is None else v for v in key[:4])  # None ("any") sorts first


def _reserve(table: TableCopy, keys: Iterable[EntryKey]) -> list[FirewallEntry]:
    """The entries of `keys` the table lacks, in a stable order, added to the copy now."""
    batch = [entry for entry in (FirewallEntry(*key) for key in sorted(keys, key=_order)) if entry not in table]
    for entry in batch:
        table.add(entry)
    return batch


async def _outside_lock(rt: Runtime, pending: Counter[FirewallEntry], batch: list[FirewallEntry],
                        call: Callable[[list[FirewallEntry]], Awaitable[None]]) -> None:
    """Send a batch the copy already shows, outside the lock, counted in `pending` (the
    run's in-flight inserts or deletes, which a new listing counts in) meanwhile; on
    failure some may have happened (a lost answer): the copy is listed again."""
    if not batch:
        return
    pending.update(batch)
    try:
        await call(batch)
    except BaseException:
        rt.fw_table = None
        raise
    finally:
        pending.subtract(batch)
        pending += Counter()  # drop the zeros


async def _insert(rt: Runtime, batch: list[FirewallEntry]) -> None:
    """Insert a reserved batch (position 1 each: above the trailing REJECT)."""
    await _outside_lock(rt, rt.fw_inflight, batch, rt.ports.firewall.insert_many)


async def fw_start(rt: Runtime, step: Step, retry: bool) -> str | None:
    # One VM's start: everything it resolves, in one batch (v4v is default-deny; entries
    # already present are left alone, stale ones go through fw-remove steps of their own).
    vm = step.vm
    async with rt.firewall_lock:
        running = await _view(rt)
        if _stub_unseen(rt, vm, running):
            # libxl built `<vm>-dm` with the domain; the run's listing replays the create
            # of the guest only, so `my-stubdom` would resolve to nothing: list again.
            rt.domains_changed()
            running = await _view(rt)
        if vm not in running.running:
            return f"{vm} is not running: nothing to insert"
        if rt.fw_rules is None:
            rt.fw_rules = RuleIndex(rt.desired)
        wanted = rt.fw_rules.start_keys(vm, running)
        batch = _reserve(await rt.firewall(), wanted)
    await _insert(rt, batch)
    return None if wanted else "resolves to no entry yet (a VM its rules name is not running)"


def _stub_unseen(rt: Runtime, vm: str, running: RunningIndex) -> bool:
    """`vm` runs, wants a device-model stub domain, and the running set shows none."""
    desired, now = rt.desired.vms.get(vm), running.running.get(vm)
    stubdom = desired.spec.stubdom if desired is not None else None
    return (now is not None and now.stubdom is None and desired is not None and desired.spec.virt == "hvm"
            and stubdom is not None and stubdom.enabled)


async def fw_apply(rt: Runtime, step: Step, retry: bool) -> str | None:
    # A kept VM's rule: insert the entries it resolves to now that the table lacks.
    rule = rt.desired.v4v_rules[step.name]
    async with rt.firewall_lock:
        wanted = rule_keys(rule, await _view(rt))
        batch = _reserve(await rt.firewall(), wanted)
    await _insert(rt, batch)
    if not wanted:
        return "resolves to no entry yet (a VM it names is not running)"
    return None


async def fw_remove(rt: Runtime, step: Step, retry: bool) -> str | None:
    # xenmgr unapplies entries when a VM stops; deleting an absent entry is an error in
    # viptables, so only what the table still holds is deleted. Decided under the lock,
    # deleted outside it, in one batch (`FirewallPort.delete_many`).
    texts = arg(step, "entries")
    entries = [parse_entry(str(t)) for t in texts] if isinstance(texts, list) else []
    async with rt.firewall_lock:
        table = await rt.firewall()
        going = [entry for entry in entries if entry in table]
        for entry in going:
            table.remove(entry)
    await _outside_lock(rt, rt.fw_leaving, going, rt.ports.firewall.delete_many)
    return None


async def fw_table(rt: Runtime, step: Step, retry: bool) -> str | None:
    # The table is owned whole: entries no rule derives go, and the default REJECT is
    # the one last entry. A new REJECT is appended before an old one is deleted, and
    # foreign entries go before that, so nothing below the old REJECT ever matches.
    texts = arg(step, "entries")
    entries = [parse_entry(str(t)) for t in texts] if isinstance(texts, list) else []
    async with rt.firewall_lock:
        table = await rt.firewall()
        try:
            if arg(step, "baseline") is True and DOM0 not in table:
                await rt.ports.firewall.append(DOM0)  # a bare table: xenmgr's baseline, then its REJECT
                table.add(DOM0, top=False)
            if arg(step, "default") is True and table.last() != DEFAULT:
                await rt.ports.firewall.append(DEFAULT)
                table.add(DEFAULT, top=False)
            for entry in entries:
                if entry in table and entry != DEFAULT:
                    await rt.ports.firewall.delete(entry)
                    table.remove(entry)
            while arg(step, "default") is True and table.counts[DEFAULT] > 1:
                await rt.ports.firewall.delete(DEFAULT)  # the first copy: the last one stays
                table.remove(DEFAULT)
        except BaseException:
            rt.fw_table = None
            raise
    return None
