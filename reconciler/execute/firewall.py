"""Firewall ops of the op table: insert what a v4v rule resolves to now, delete stale entries,
and keep the table's own shape (foreign entries out, the default REJECT last).

Touches the host through the ports in `Runtime` only. Called through
`reconciler.execute.ops.OPS`. A rule is resolved when its step runs, against the
domains running at that moment (`Runtime.running`), with the same pure resolver the
diff uses (`reconciler.diff.firewall.rule_entries`): the domids of VMs this run built
exist only now. The table is listed once per run and kept current with this run's
changes (`Runtime.firewall`, in order, copies counted), under one lock, so two rules never
insert the same entry twice; a change that fails drops the copy, so the next step lists
the table again. `fw-table` removes what no rule derives and keeps the default REJECT last.
"""

from __future__ import annotations

from reconciler.diff.firewall import rule_entries
from reconciler.errors import TerminalHostError
from reconciler.execute.runtime import Runtime, arg
from reconciler.model.host import FirewallEntry
from reconciler.plan.steps import Step

DEFAULT = FirewallEntry(target="REJECT")  # xenmgr's default deny, the table's last entry


def parse_entry(text: str) -> FirewallEntry:
    """An entry as plans carry it (`str(FirewallEntry)`); TerminalHostError naming the text otherwise."""
    try:
        return FirewallEntry.parse(text)
    except ValueError as exc:
        raise TerminalHostError(f"the plan holds a firewall entry {text!r} that is not viptables options; "
                                "run plan again") from exc


async def fw_apply(rt: Runtime, step: Step, retry: bool) -> str | None:
    # v4v is default-deny: insert the rule's entries that resolve now. Entries already
    # present are left alone; stale ones go through fw-remove steps of their own.
    rule = rt.desired.v4v_rules[step.name]
    async with rt.firewall_lock:
        wanted = rule_entries(rule, await rt.running())
        table = await rt.firewall()
        try:
            for entry in sorted(e for e in wanted if e not in table):
                await rt.ports.firewall.insert(entry)  # position 1: above the trailing REJECT
                table.add(entry)
        except BaseException:
            rt.fw_table = None  # the insert may have happened (a lost answer): list again
            raise
    if not wanted:
        return "resolves to no entry yet (a VM it names is not running)"
    return None


async def fw_remove(rt: Runtime, step: Step, retry: bool) -> str | None:
    # xenmgr unapplies entries when a VM stops; deleting an absent entry is an error in
    # viptables, so only what the table still holds is deleted.
    texts = arg(step, "entries")
    entries = [parse_entry(str(t)) for t in texts] if isinstance(texts, list) else []
    async with rt.firewall_lock:
        table = await rt.firewall()
        try:
            for entry in entries:
                if entry in table:
                    await rt.ports.firewall.delete(entry)
                    table.remove(entry)
        except BaseException:
            rt.fw_table = None
            raise
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
