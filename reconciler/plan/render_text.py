"""The text plan people review: Terraform-like symbols, grouped by VM, one summary line.

Pure: Plan -> str, byte-identical for the same Plan. Called by `reconciler plan`
(`--format text`, the default). Symbols are `Action` values: `+` create, `~` update in
place, `-/+` restart, `-` destroy. Each resource line carries its impact and reason;
field lines show `before -> after`; secrets always print as `(sensitive)`. ANSI colour
only when the caller asks (the CLI: `--color`, see `reconciler.cli.colour`).

After the steps, `Reachability:` lists the pairs the plan allows (+) and refuses (-) that
the host does not now, and rpc-proxy calls alike (`reconciler.plan.reachability`).

A VM whose crashed domain is preserved for inspection gets a line of its own and no
change; with nothing else to do the summary says so instead of "No changes".
Summary counts resources: create = CREATE, change live = UPDATE with something applied
now, needs restart = RESTART plus UPDATEs with restart-only fields left pending, then
the DELETEs by the word apply reports them with (`reconciler.plan.words`): to destroy (a
VM removed), to stop, to detach (a disk), to unplug, to release, to remove; the JSON
plan's `summary.destroy` counts them all.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring

from reconciler.model.common import SECRET_FIELDS
from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, Action, FieldChange, ResourceChange
from reconciler.plan.steps import HOOKS, Op, Step
from reconciler.plan.words import DESTROY, REMOVALS, outcome

SENSITIVE = "(sensitive)"
_COLOURS = {Action.CREATE: "32", Action.UPDATE: "33", Action.RESTART: "35", Action.DELETE: "31", Action.ADOPT: "36"}
_LEGEND = "Symbols: + create, ~ update in place, -/+ restart (rebuild the domain), - destroy or detach."
_ADOPT_LEGEND = " <= adopt (take over a domain another toolstack built, not restarted)."


def _legend(plan: Plan) -> str:
    """The symbols line; `<=` is explained only in a plan that adopts (spec.adopt)."""
    if any(c.action is Action.ADOPT for c in plan.diff.changes):
        return _LEGEND[:-1] + "," + _ADOPT_LEGEND
    return _LEGEND


def summary_counts(plan: Plan) -> dict[str, int]:
    counts = {"create": 0, "change_live": 0, "needs_restart": 0, "destroy": 0}
    for change in plan.diff.changes:
        if change.action is Action.CREATE:
            counts["create"] += 1
        elif change.action is Action.DELETE:
            counts["destroy"] += 1
        elif change.action is Action.RESTART:
            counts["needs_restart"] += 1
        elif change.action is Action.ADOPT:  # taken over; restart-only fields it leaves pending count too
            counts["adopt"] = counts.get("adopt", 0) + 1
            counts["needs_restart"] += int(change.pending)
        else:
            applied_now = not change.pending or any(f.impact == "live" for f in change.fields)
            counts["change_live"] += int(applied_now)
            counts["needs_restart"] += int(change.pending)
    return counts


def _preserved(plan: Plan) -> str:
    crashed = [n for n in plan.diff.preserved if n not in plan.diff.rebooted]
    parts = []
    for names, verb, field in ((crashed, "crashed", "onCrash"), (list(plan.diff.rebooted), "rebooted", "onReboot")):
        if names:
            vms = f"VM {names[0]} {verb} and is" if len(names) == 1 else f"VMs {', '.join(names)} {verb} and are"
            parts.append(f"{vms} preserved for inspection (lifecycle.{field}: preserve)")
    return "; ".join(parts)


def summary_line(plan: Plan) -> str:
    if not plan.has_changes and plan.diff.preserved:
        return f"Nothing to apply, but the host does not match: {_preserved(plan)}."
    if not plan.has_changes:
        return "No changes. The host matches the manifests."
    c = summary_counts(plan)
    adopt = f"{c['adopt']} to adopt, " if c.get("adopt") else ""
    return (
        f"Plan: {adopt}{c['create']} to create, {c['change_live']} to change live, "
        f"{c['needs_restart']} needs restart{_removals(plan)}."
    )


def _removals(plan: Plan) -> str:
    """`, 1 to destroy, 2 to detach`: the DELETEs by their outcome word (`reconciler.plan.words`,
    the words apply reports them with); `to destroy` always, the others when there are some."""
    found = Counter(outcome(c) for c in plan.diff.changes if c.action is Action.DELETE)
    return "".join(f", {found[o]} {o.plan}" for o in REMOVALS if o is DESTROY or found[o])


def is_sensitive(field: FieldChange) -> bool:
    return field.sensitive or _secret_path(field.path)


@functools.lru_cache(maxsize=4096)
def _secret_path(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in SECRET_FIELDS


# One encoder for every value: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": "), default=str,
                            check_circular=False)  # plan values are trees: no cycle to detect
string = encode_basestring  # a str as JSON: what that encoder spells strings with (ensure_ascii=False)


def compact(value: object) -> str:
    """One value as compact JSON (keys sorted, `", "` and `": "` separators, anything
    else through `str`), as both plan formats spell values. The scalars most fields
    hold are spelled here as the encoder spells them (in its order of checks), without
    its per-call set-up."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    return _ENCODER.encode(value)


def show(value: object, sensitive: bool = False) -> str:
    """One value as the plan prints it: JSON spelling, `(none)` for nothing."""
    if sensitive:
        return SENSITIVE
    if value is None:
        return "(none)"
    return compact(value)


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


_SCALARS = (str, int, bool, type(None))  # exact types whose equal values spell the same


def field_key(field: FieldChange) -> tuple[object, ...] | None:
    """A key under which a field's rendering can be remembered for one plan (a
    1,000-VM plan has 30k fields, few distinct): None unless both values are plain
    scalars, whose types are part of the key (1 == True, but they print apart)."""
    before, after = type(field.before), type(field.after)
    if before in _SCALARS and after in _SCALARS:
        return (field.path, before, field.before, after, field.after, field.impact, field.sensitive)
    return None


class Remembered:
    """Renderings of one plan's fields, by the field object (the diff shares equal
    FieldChanges) and, for fields made elsewhere, by `field_key`; valid while the plan
    they came from is alive, i.e. for one rendering."""

    def __init__(self) -> None:
        self._by_id: dict[int, str] = {}
        self._by_value: dict[tuple[object, ...], str] = {}

    def get(self, field: FieldChange, spell: Callable[[FieldChange], str]) -> str:
        text = self._by_id.get(id(field))
        if text is None:
            key = field_key(field)
            if key is None:
                text = spell(field)
            else:
                text = self._by_value.get(key)
                if text is None:
                    text = self._by_value[key] = spell(field)
            self._by_id[id(field)] = text
        return text


# Enum members hash and read their name and value through Python code: look them up by id.
_ACTIONS = {id(action): (action.value, _COLOURS[action], action.name.lower()) for action in Action}


def action_text(action: Action) -> tuple[str, str, str]:
    """(symbol, ANSI colour, lower-case name) of an Action."""
    return _ACTIONS[id(action)]


def _spell_field(change: ResourceChange, field: FieldChange) -> str:
    secret = is_sensitive(field)
    if change.action is Action.CREATE or (field.before is None and field.after is not None):
        line = f"+ {field.path} = {show(field.after, secret)}"
    elif change.action is Action.DELETE or (field.after is None and field.before is not None):
        line = f"- {field.path} = {show(field.before, secret)}"
    else:
        line = f"~ {field.path}: {show(field.before, secret)} -> {show(field.after, secret)}"
    if change.action is not Action.DELETE and (field.impact != "live" or change.impact != "live"):
        # A removal's impact is on its resource line: its fields are the values that go.
        pending = " (pending: updatePolicy is live)" if change.pending and field.impact == "restart" else ""
        line += f"  [{field.impact}]{pending}"
    return "      " + line


def _resource_lines(change: ResourceChange, colour: bool, seen: dict[tuple[str, str, bool], Remembered]) -> Iterator[str]:
    symbol, code, _ = action_text(change.action)
    tag = change.impact + (", restart pending" if change.pending else "")
    reason = f": {change.reason}" if change.reason else ""
    yield f"  {_paint(symbol, code, colour)} {change.kind} {change.name} [{tag}]{reason}"
    # A field's line depends on its change's action, impact and pending flag too.
    context = (symbol, change.impact, change.pending)
    lines = seen.get(context)
    if lines is None:
        lines = seen[context] = Remembered()
    spell = functools.partial(_spell_field, change)
    for field in change.fields:
        yield lines.get(field, spell)


# When each hook step runs and what its failure does (OpenXT, openxt.md 1.11), in run order.
_HOOK_WHEN: dict[Op, str] = {
    "pre-delete": "before the VM removed from the manifests is shut down (path from its last-applied record); "
                  "a failure keeps it",
    "on-stopped": "once the VM has stopped; a failure is logged and the apply goes on",
    "pre-boot": "before the domain is built; a failure fails the start",
    "post-create": "once the domain is built, paused, before it runs; a failure fails the start",
    "on-paused": "once the VM is paused; a failure is logged and the apply goes on",
    "on-running": "once the VM runs; a failure is logged and the apply goes on",
}
_HOOK_ORDER = {op: n for n, op in enumerate(_HOOK_WHEN)}


def hook_line(step: Step) -> str:
    """A hook step's own plan line: what it runs, its timeout, when, and what a failure does."""
    args = dict(step.args)
    timeout = args.get("timeout")
    within = f" (timeout {timeout:g} s)" if isinstance(timeout, (int, float)) else ""
    return f"  hook {step.id}: {HOOKS[step.op][0]} runs {compact(args.get('argv'))}{within} {_HOOK_WHEN[step.op]}"


def _hook_lines(plan: Plan) -> dict[str, list[str]]:
    """VM -> the lines of its hook steps, in the order they run."""
    steps: dict[str, list[Step]] = {}
    for step in plan.steps:
        if step.op in _HOOK_ORDER:
            steps.setdefault(step.vm, []).append(step)
    return {vm: [hook_line(s) for s in sorted(found, key=lambda s: _HOOK_ORDER[s.op])] for vm, found in steps.items()}


def _changes(plan: Plan, colour: bool) -> Iterator[str]:
    group: str | None = None
    seen: dict[tuple[str, str, bool], Remembered] = {}
    hooks = _hook_lines(plan)
    for change in plan.diff.changes:
        if change.vm != group:
            if group is not None:
                yield from hooks.get(group, ())
                yield ""
            group = change.vm
            yield _paint("# host" if group == HOST else f"# VM {group}", "1", colour)
        yield from _resource_lines(change, colour, seen)
    if group is not None:
        yield from hooks.get(group, ())


def _schedule(plan: Plan) -> Iterator[str]:
    if not plan.generations:
        yield "No host steps: every change above waits for a restart."
        return
    yield f"Steps, in {len(plan.generations)} stage(s); the steps of one stage may run in parallel:"
    width = len(str(len(plan.generations)))
    for number, generation in enumerate(plan.generations, 1):
        yield f"  {number:>{width}}. {', '.join(generation)}"


def _reachability(plan: Plan, colour: bool) -> list[str]:
    """`Reachability:` what the plan opens (+) and closes (-), one line each with its
    reason; nothing when nothing moves (reconciler.plan.reachability)."""
    from reconciler.plan.reachability import text_lines

    found = [f"  {_paint(text[0], _COLOURS[Action.CREATE if text[0] == '+' else Action.DELETE], colour)}{text[1:]}"
             if text[0] in "+-" else f"  {text}" for text in text_lines(plan.reachability)]
    return ["Reachability:", *found, ""] if found else []


def render_text(plan: Plan, *, colour: bool = False) -> str:
    lines: list[str] = []
    if plan.has_changes:
        lines += [_legend(plan), "", *_changes(plan, colour), "", *_schedule(plan), "", *_reachability(plan, colour)]
    if plan.diff.unmanaged:
        lines += [f"Unmanaged domains (listed once, never touched): {', '.join(plan.diff.unmanaged)}", ""]
    if plan.diff.notes:
        lines += ["Notes:", *(f"  - {note}" for note in plan.diff.notes), ""]
    if plan.diff.preserved:
        lines += [f"Left as it is: {_preserved(plan)}. Inspect it (xl dump-core), then destroy it (xl destroy): "
                  "the next plan builds it again.", ""]
    lines.append(_paint(summary_line(plan), "1", colour))
    return "\n".join(lines) + "\n"
