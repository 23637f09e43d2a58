"""V4VRule changes: firewall entries missing, waiting for a VM this plan starts, stale.

Pure. Compares the entries the desired rules resolve to (`reconciler.diff.firewall`)
against the observed viptables table. `entries` before/after are sorted
`str(FirewallEntry)` lists. A rule that names a VM this plan starts waits for it (its
reason counts them; execute resolves the entries when each starts) and shows entries
only if some that resolve now are missing.
Rules of VMs being created are CREATEd by `reconciler.diff.vm`. What the table holds
that no kept rule derives is stale: under a managed VM it names, else the table's own
change (`HOST`/`TABLE_NAME`, with the default REJECT: `reconciler.diff.table`).
"""

from __future__ import annotations

from reconciler.diff.context import LIVE_POWER, Context
from reconciler.diff.firewall import EntryKey, RuleIndex, RunningIndex, RunningVM, entry_key, entry_text, rule_keys
from reconciler.diff.table import DEFAULT_AFTER, DOM0, table_drift
from reconciler.model.host import FirewallEntry
from reconciler.plan.changes import HOST, TABLE_NAME, Action, FieldChange, ResourceChange


def running_set(ctx: Context, without: set[str]) -> dict[str, RunningVM]:
    """Running domains (stub domains folded into their guest) as the firewall sees them;
    a domain's type is its manifest's, for domains the reconciler manages."""
    stub_of = {guest: ctx.observed.domains[stub].domid for stub, guest in ctx.stubdoms.items()}
    out: dict[str, RunningVM] = {}
    for name, info in ctx.observed.domains.items():
        if info.power not in LIVE_POWER or name in without or name in ctx.stubdoms:
            continue
        vm = ctx.desired.vms.get(name)
        kind = vm.spec.type if vm is not None and info.managed else None
        out[name] = RunningVM(info.domid, kind, info.uuid, stub_of.get(name))
    return out


def _owned_domids(ctx: Context) -> dict[int, str]:
    """domid -> name of every managed domain and of its stub domain."""
    out = {info.domid: name for name, info in ctx.observed.domains.items() if info.managed}
    for stub, guest in ctx.stubdoms.items():
        if ctx.observed.domains[guest].managed:
            out[ctx.observed.domains[stub].domid] = guest
    return out


SHOWN = 3  # the starting VMs a waiting rule's reason names; more are counted


def waiting_reason(count: int, names: list[str]) -> str:
    """`applied when a, b starts`, or for many VMs one line with a count:
    `applied when 999 VMs start: vm001, vm002, vm003 and 996 more`."""
    if count <= SHOWN:
        return f"applied when {', '.join(names)} starts"
    return f"applied when {count} VMs start: {', '.join(names[:SHOWN])} and {count - SHOWN} more"


def _rule_change(ctx: Context, name: str, expected: frozenset[EntryKey], present: frozenset[EntryKey] | None,
                 rules: RuleIndex, starting_by_type: dict[str, list[str]]) -> ResourceChange | None:
    rule = ctx.desired.v4v_rules[name]
    owner = rule.spec.vm
    count, names = rules.waiting(rule, ctx.starting, starting_by_type, SHOWN)
    if count:
        # What it resolves to once they run is known at apply time only. The entries it
        # keeps are not shown (a rule of a type holds one per VM: the plan would grow
        # with the square of the host); those missing now are, as below.
        reason = waiting_reason(count, names)
        if present is None or expected <= present:
            return ResourceChange("V4VRule", name, owner, Action.UPDATE, "live", (), reason)
        field = FieldChange("entries", entry_text(expected & present), entry_text(expected), "live")
        return ResourceChange("V4VRule", name, owner, Action.UPDATE, "live", (field,), f"{reason}; {_missing(expected - present)}")
    if present is None or expected <= present:
        return None
    field = FieldChange("entries", entry_text(expected & present), entry_text(expected), "live")
    return ResourceChange("V4VRule", name, owner, Action.UPDATE, "live", (field,), _missing(expected - present))


def _missing(keys: frozenset[EntryKey]) -> str:
    return f"{len(keys)} firewall entr{'y is' if len(keys) == 1 else 'ies are'} missing from viptables"


def _stale(ctx: Context, explained: frozenset[EntryKey], table: tuple[FirewallEntry, ...]) -> list[ResourceChange]:
    """Entries no kept rule derives: a managed domain's under its VM (after it stops, if
    it stops), the rest (and, when the default REJECT moves, all below it) the table's."""
    drift = table_drift([entry_key(entry) for entry in table], explained)
    owned = _owned_domids(ctx)
    stale: dict[str, list[EntryKey]] = {}
    loose: list[EntryKey] = []
    for entry in drift.foreign:
        involved = [owned[d] for d in entry[:2] if d is not None and d in owned]  # dom_in, dom_out
        if not involved or (drift.default is not None and entry in drift.below):
            loose.append(entry)  # foreign, of a dead or unmanaged domain: the table's own drift
            continue
        going = [vm for vm in involved if vm in ctx.stopping]
        stale.setdefault((going or involved)[0], []).append(entry)
    out: list[ResourceChange] = []
    for vm, entries in sorted(stale.items()):
        field = FieldChange("entries", entry_text(entries), None, "live")
        reason = (f"{vm} stops: its firewall entries are removed" if vm in ctx.stopping
                  else "no desired v4v rule explains these firewall entries")
        out.append(ResourceChange("V4VRule", f"{vm}-firewall-stale", vm, Action.DELETE, "live", (field,), reason))
    if loose or drift.default is not None:
        bare = drift.default == "" and all(entry_key(entry) != DOM0 for entry in table)
        out.append(_table_change(loose, drift.default, bare))
    return out


DOM0_TEXT = str(FirewallEntry(0, 0))


def _table_change(loose: list[EntryKey], default: str | None, bare: bool = False) -> ResourceChange:
    """`bare`: neither the default REJECT nor the dom0<->dom0 ACCEPT is there, as on a
    host where xenmgr never ran (v4v starts empty and lets everything through): the
    whole baseline of xenmgr's reworkRules is laid, dom0<->dom0 first, then the REJECT
    (a REJECT alone would cut dom0's own v4v, the rpc proxy's)."""
    fields: list[FieldChange] = []
    reasons: list[str] = []
    if loose:
        fields.append(FieldChange("entries", entry_text(loose), None, "live"))
        reasons.append(f"{len(loose)} entr{'y' if len(loose) == 1 else 'ies'} no desired v4v rule derives")
    if bare:
        fields.append(FieldChange("baseline", None, DOM0_TEXT, "live"))
    if default is not None:
        fields.append(FieldChange("default", default or None, DEFAULT_AFTER, "live"))
        reasons.append(("the default REJECT is missing: v4v is open" if not default
                        else "the default REJECT must be there once, and last")
                       + ("; a bare table: xenmgr's dom0<->dom0 ACCEPT goes in before it" if bare else ""))
    return ResourceChange("V4VRule", TABLE_NAME, HOST, Action.UPDATE, "live", tuple(fields), "; ".join(reasons))


def rule_changes(ctx: Context) -> list[ResourceChange]:
    """Rules of running VMs (kept, or restarted by this plan): each rule's entries are
    resolved once, for its own change and for explaining what viptables holds. Rules
    of VMs that are not running, or are created, or not ours, are not compared."""
    after_running = RunningIndex(running_set(ctx, ctx.stopping))
    firewall = ctx.observed.firewall
    present = None if firewall is None else frozenset(entry_key(entry) for entry in firewall)
    if present is None and ctx.desired.v4v_rules:
        ctx.notes.append("the v4v firewall table is not in this source (a captured dump?): "
                         "missing and stale firewall entries are not compared")
    expected: dict[str, frozenset[EntryKey]] = {}
    for name, rule in ctx.desired.v4v_rules.items():
        owner = rule.spec.vm
        if owner in ctx.kept or (owner in ctx.starting and owner in ctx.observed.domains):
            expected[name] = rule_keys(rule, after_running)
    rules = RuleIndex(ctx.desired)
    starting_by_type: dict[str, list[str]] = {}
    for vm in sorted(ctx.starting):
        starting_by_type.setdefault(ctx.desired.vms[vm].spec.type, []).append(vm)
    out = [c for name in sorted(expected)
           if (c := _rule_change(ctx, name, expected[name], present, rules, starting_by_type)) is not None]
    if present is not None:
        kept = [entries for name, entries in expected.items() if ctx.desired.v4v_rules[name].spec.vm in ctx.kept]
        out += _stale(ctx, frozenset().union(*kept), firewall or ())
    return out
