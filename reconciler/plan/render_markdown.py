"""The plan as a GitHub-flavoured Markdown comment, for a pull request's reviewers.

Pure: Plan -> str, byte-identical for the same Plan and host label. Called by
`reconciler plan --format markdown`. The first line is the hidden marker
`<!-- reconciler-plan -->`, so CI can find its own comment and update it instead of
adding one per push. Then a heading with the host and the digests, the text plan's
summary line, a table of changes per action and impact, and one collapsed
`<details>` block per VM, then the host-wide changes, Reachability and the steps.

Every line inside a block is the text plan's own line (`render_text` writes them,
secrets as `(sensitive)`, never coloured), set in a fenced code block whose fence is
longer than any run of backticks in it: nothing a value holds (`|`, `<`, backticks)
can end the block, make a table cell or HTML. Text in HTML (`<summary>`) is
HTML-escaped; control characters (and the bidi controls) anywhere are written as `\\n`,
`\\x1b`, `\\u202e`. GitHub refuses a comment over 65,536 characters: blocks that do not
fit are left out, from the first that does not on, and one line says what was left
out and how to see it.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from reconciler.errors import printable
from reconciler.model.digest import desired_digest
from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, IMPACT_ORDER, Action, Impact, ResourceChange
from reconciler.plan.render_text import (
    Remembered,
    _hook_lines,
    _preserved,
    _reachability,
    _resource_lines,
    _schedule,
    summary_line,
)

MARKER = "<!-- reconciler-plan -->"
COMMENT_LIMIT = 65_536  # characters GitHub accepts in one issue or pull-request comment
_RESERVE = 600  # room kept for the line saying what was left out (it is under 400)
# The rows of the summary table: the text plan's symbols, in the words of its legend.
_ACTIONS = ((Action.CREATE, "create"), (Action.UPDATE, "update in place"),
            (Action.RESTART, "restart (rebuild the domain)"), (Action.DELETE, "destroy or detach"))
_PER_VM = {Action.CREATE: "to create", Action.UPDATE: "to update in place", Action.RESTART: "to restart",
           Action.DELETE: "to destroy or detach", Action.ADOPT: "to adopt"}
# The adopt row (`spec.adopt`) is shown only in a plan that adopts.
_ADOPT_ROW = (Action.ADOPT, "adopt (take over, not restarted)")


def _rows(changes: Sequence[ResourceChange]) -> tuple[tuple[Action, str], ...]:
    return (_ADOPT_ROW, *_ACTIONS) if any(c.action is Action.ADOPT for c in changes) else _ACTIONS
_IMPACTS: tuple[Impact, ...] = tuple(IMPACT_ORDER)
_TICKS = re.compile("`+")
_INLINE = re.compile(r"([\\`*_\[\]<>()#+!|~&])")


class Block(NamedTuple):
    """One part of the comment that may be left out whole: `what` names it in the line
    saying what was left out ("VM", or a section's name), `text` makes its Markdown (a
    block left out is never made: of a 1,000-VM plan, the 25 or so that fit)."""

    what: str
    text: Callable[[], str]


def fenced(lines: list[str]) -> str:
    """Lines as a fenced code block, literal whatever they hold: the fence is one
    backtick longer than the longest run of backticks inside (CommonMark closes a
    fence only with one at least as long)."""
    body = "\n".join(printable(line) for line in lines)
    longest = max((len(run) for run in _TICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def code_span(text: str) -> str:
    """`text` as an inline code span: literal (no Markdown, no HTML, no @mention), and
    ended only by a run of backticks as long as its own fence. Not for table cells: a
    `|` would split the cell there (GFM splits cells before reading code spans)."""
    text = printable(text)
    longest = max((len(run) for run in _TICKS.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def inline(text: str) -> str:
    """Plain text in Markdown: every character Markdown or HTML would read escaped."""
    return _INLINE.sub(r"\\\1", printable(text))


def details(summary: str, lines: list[str]) -> str:
    """A collapsed block: `summary` is HTML (escape what goes in it), `lines` text."""
    return f"<details><summary>{summary}</summary>\n\n{fenced(lines)}\n\n</details>"


def _per_vm(plan: Plan) -> Iterator[tuple[str, list[ResourceChange]]]:
    """(vm, its changes) in the Diff's order (by VM name), the host's own group last."""
    groups: dict[str, list[ResourceChange]] = {}
    for change in plan.diff.changes:
        groups.setdefault(change.vm, []).append(change)
    yield from ((vm, found) for vm, found in groups.items() if vm != HOST)
    if HOST in groups:
        yield HOST, groups[HOST]


def _vm_summary(vm: str, changes: list[ResourceChange]) -> str:
    counts = {action: sum(c.action is action for c in changes) for action, _ in _rows(changes)}
    what = ", ".join(f"{n} {_PER_VM[action]}" for action, n in counts.items() if n)
    worst = max((c.impact for c in changes), key=IMPACT_ORDER.__getitem__)
    pending = " (restart pending)" if any(c.pending for c in changes) else ""
    name = "Host-wide (v4v table, pciback)" if vm == HOST else f"VM <code>{html.escape(printable(vm))}</code>"
    return f"{name}: {what}; impact <b>{worst}</b>{pending}"


def _vm_block(vm: str, changes: list[ResourceChange], hooks: list[str], seen: dict[tuple[str, str, bool], Remembered]) -> str:
    heading = "# host" if vm == HOST else f"# VM {vm}"
    lines = [heading, *(line for c in changes for line in _resource_lines(c, False, seen)), *hooks]
    return details(_vm_summary(vm, changes), lines)


def _change_blocks(plan: Plan) -> Iterator[Block]:
    seen: dict[tuple[str, str, bool], Remembered] = {}
    hooks = _hook_lines(plan)
    for vm, changes in _per_vm(plan):
        yield Block("the host-wide changes" if vm == HOST else "VM",
                    functools.partial(_vm_block, vm, changes, hooks.get(vm, []), seen))


def _reach_block(plan: Plan, lines: list[str]) -> str:
    moved = plan.reachability
    what = f"{len(moved.allowed or ())} now allowed, {len(moved.denied or ())} now refused"
    unknown = "; not compared" if moved.allowed is None and moved.denied is None else (
        "; partly not compared" if moved.notes else "")
    return details(f"Reachability: {what}{unknown}", lines)


def _table(plan: Plan) -> str:
    actions = _rows(plan.diff.changes)
    counts = {(a, i): 0 for a, _ in actions for i in _IMPACTS}
    for change in plan.diff.changes:
        counts[change.action, change.impact] += 1
    rows = ["| Action | " + " | ".join(_IMPACTS) + " | total |", "| --- |" + " ---: |" * (len(_IMPACTS) + 1)]
    for action, word in actions:
        row = [counts[action, i] for i in _IMPACTS]
        rows.append(f"| {code_span(action.value)} {word} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = [sum(counts[a, i] for a, _ in actions) for i in _IMPACTS]
    rows.append("| **total** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return "\n".join(rows)


def _head(plan: Plan, host: str | None) -> str:
    digest = desired_digest(plan.desired).total
    title = f"### Reconciler plan for {code_span(host)}" if host else "### Reconciler plan"
    parts = [MARKER, title, "",
             f"Manifests {code_span(digest[:12])} (desired digest) against host state "
             f"{code_span(plan.fingerprint[:12])} (observed fingerprint).", "",
             f"**{inline(summary_line(plan))}**"]
    if plan.has_changes:
        parts += ["", _table(plan)]
    return "\n".join(parts)


def _blocks(plan: Plan) -> Iterator[Block]:
    """Every part after the head, in the order shown; notes first (what was not compared)."""
    if plan.diff.notes:
        yield Block("the notes", functools.partial(fenced, ["Notes:", *(f"  - {note}" for note in plan.diff.notes)]))
    if plan.diff.preserved:
        yield Block("the preserved domains", functools.partial(fenced, [
            f"Left as it is: {_preserved(plan)}. Inspect it (xl dump-core), then destroy it (xl destroy): "
            "the next plan builds it again."]))
    if not plan.has_changes:
        yield from _unmanaged(plan)
        return
    yield from _change_blocks(plan)
    reach = _reachability(plan, False)
    if reach:
        yield Block("Reachability", functools.partial(_reach_block, plan, reach[:-1]))
    yield Block("the steps", lambda: details(f"Steps: {len(plan.generations)} stage(s)", list(_schedule(plan))))
    yield from _unmanaged(plan)


def _unmanaged(plan: Plan) -> Iterator[Block]:
    if plan.diff.unmanaged:
        yield Block("the unmanaged domains", functools.partial(
            fenced, [f"Unmanaged domains (listed once, never touched): {', '.join(plan.diff.unmanaged)}"]))


def _left_out(blocks: list[Block], limit: int) -> str:
    vms = sum(b.what == "VM" for b in blocks)
    named = [f"the details of {vms} VM{'s' if vms != 1 else ''}"] if vms else []
    named += list(dict.fromkeys(b.what for b in blocks if b.what != "VM"))
    return (f"**Left out to stay under GitHub's {limit:,}-character comment limit: {', '.join(named)}.** "
            "See the whole plan with `reconciler plan --format text` (or `--format json`) on the same "
            "manifests and host.")


def render_markdown(plan: Plan, *, host: str | None = None, limit: int = COMMENT_LIMIT) -> str:
    """The comment, at most `limit` characters whatever the plan's size (`limit`: GitHub's,
    smaller in tests). `host` names what was planned against, in the heading."""
    head = _head(plan, host)
    return "\n\n".join([head, *_fit(len(head) + 1, list(_blocks(plan)), limit)]) + "\n"


def _fit(size: int, blocks: list[Block], limit: int) -> list[str]:
    """The blocks' texts after `size` characters: all of them if they fit in `limit`,
    else those that fit with room for the line naming what was left out, and that line.
    Each costs its length and the blank line before it; none is made past the limit."""
    texts: list[str] = []
    cut = len(blocks)  # how many fit with room for that line
    for number, block in enumerate(blocks):
        text = block.text()
        size += len(text) + 2
        if size > limit - _RESERVE:
            cut = min(cut, number)
        if size > limit:
            return [*texts[:cut], _left_out(blocks[cut:], limit)]
        texts.append(text)
    return texts
