"""The action graph as Graphviz dot or Mermaid, for a picture of the start order.

Pure: Plan -> str, sorted (VM clusters by name, steps by id, edges by (before, after)),
so the same Plan gives byte-identical text. Called by `reconciler plan --format
dot|mermaid|svg` (svg is this dot drawn by Graphviz, in `reconciler.cli.plan`).

One box per VM holds every step of that VM and of its devices; host-wide steps (the v4v
table, pciback bindings no rule needs, priority gates) stand outside. A step's fill is
the action of its resource (create, change, restart, delete: the text plan's words), its
shape what the step does (bring up, change live, take down, a hook, a gate). Edges carry
their rule's short reason (`reconciler.plan.rules.label`; the full one is the dot
tooltip); a plain arrow is the next step of one resource; dashed edges only order (a
priority tie-break: a failure does not skip past them). A legend lists what the graph uses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import NamedTuple

from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, Action
from reconciler.plan.rules import label, reason
from reconciler.plan.steps import Op, Step


class Look(NamedTuple):
    """How one legend entry draws: fill and border colours (dot and Mermaid alike)."""

    word: str
    fill: str
    line: str


# Fill by the action of the step's resource, in the text plan's words.
ACTIONS: dict[Action | None, Look] = {
    Action.CREATE: Look("create", "#d8f3d4", "#2e7d32"),
    Action.UPDATE: Look("change live", "#fff1c2", "#a87900"),
    Action.RESTART: Look("restart", "#ecdcf7", "#7b1fa2"),
    Action.DELETE: Look("delete", "#fad4d4", "#c62828"),
    Action.ADOPT: Look("adopt", "#d4eef7", "#00838f"),
    None: Look("host-wide", "#eeeeee", "#616161"),
}

# Shape by what a step does: (dot shape, Mermaid brackets, legend words).
SHAPES: dict[str, tuple[str, tuple[str, str], str]] = {
    "up": ("box", ("[", "]"), "builds or brings up"),
    "live": ("ellipse", ("([", "])"), "changes a running domain"),
    "down": ("octagon", ("{{", "}}"), "stops or removes"),
    "hook": ("note", ("[[", "]]"), "runs a hook"),
    "gate": ("diamond", ("{", "}"), "waits for a priority level"),
}
_SHAPE_OF: dict[Op, str] = {
    "pci-assignable-add": "up", "create": "up", "record": "up", "unpause": "up", "wait-sentinel": "up",
    "fw-start": "up", "rpc-set": "up",
    "attach": "live", "fw-apply": "live", "pause": "live", "mem-set": "live", "vcpu-set": "live",
    "xenstore-write": "live", "set": "live", "media": "live", "fw-table": "live",
    "shutdown": "down", "detach": "down", "destroy": "down", "fw-remove": "down", "pci-assignable-remove": "down",
    "forget": "down", "rpc-clear": "down",
    "rename": "live",  # xl rename of a domain adopted under another name
    "adopt": "up",  # marks a domain another toolstack built as the reconciler's
    "pre-boot": "hook", "post-create": "hook", "on-running": "hook", "on-paused": "hook", "on-stopped": "hook",
    "pre-delete": "hook",
    "gate": "gate",
}
_KIND_WORD = {"Disk": "disk", "NIC": "NIC", "PCIPassthrough": "PCI", "V4VRule": "v4v", "RPCRule": "rpc"}
# Graph and defaults: top to bottom (a VM's steps are a column, VMs side by side), tight spacing.
_DOT_HEAD = [
    "digraph plan {",
    '  graph [rankdir=TB, newrank=true, nodesep=0.2, ranksep=0.3, fontname="Helvetica", fontsize=12,'
    ' labelloc=t, tooltip="reconciler plan"];',
    '  node [fontname="Helvetica", fontsize=10, style=filled, margin="0.08,0.03", height=0.3];',
    '  edge [fontname="Helvetica", fontsize=8, color="#555555", fontcolor="#333333", arrowsize=0.6];',
]


def shape_of(step: Step) -> str:
    """`up`, `live`, `down`, `hook` or `gate` (an op this table misses draws as `up`)."""
    return _SHAPE_OF.get(step.op, "up")


def _actions(plan: Plan) -> dict[tuple[str, str], Action]:
    return {(change.kind, change.name): change.action for change in plan.diff.changes}


def action_of(step: Step, actions: dict[tuple[str, str], Action]) -> Action | None:
    """The action of the step's resource; a VM's own firewall or rpc-proxy step (no
    resource of its own) takes its VM's; host-wide steps have none."""
    if step.vm == HOST:
        return None
    return actions.get((step.kind, step.name)) or actions.get(("VM", step.vm))


def step_label(step: Step) -> str:
    """Inside its VM's box a VM step needs only its op; a device step adds what it acts on."""
    if step.op == "gate":
        return step.name.strip("()").replace("-", " ")
    if step.kind == "VM" and step.vm != HOST:
        return step.op
    return f"{step.op}\n{_KIND_WORD.get(step.kind, step.kind)} {step.name}"


def _by_vm(plan: Plan) -> tuple[dict[str, list[Step]], list[Step]]:
    """Each VM's steps (VMs sorted by name, steps by id) and the host-wide steps."""
    groups: dict[str, list[Step]] = defaultdict(list)
    host: list[Step] = []
    for step in plan.steps:  # sorted by id
        (host if step.vm == HOST else groups[step.vm]).append(step)
    return dict(sorted(groups.items())), host


def _used(plan: Plan, actions: dict[tuple[str, str], Action]) -> tuple[list[Action | None], list[str], set[str]]:
    """The actions, shapes and edge kinds the plan draws, in legend order."""
    looks = {action_of(step, actions) for step in plan.steps}
    shapes = {shape_of(step) for step in plan.steps}
    return ([a for a in ACTIONS if a in looks], [s for s in SHAPES if s in shapes],
            {d.kind for d in plan.dependencies})


def _q(text: str) -> str:
    """A dot double-quoted string: backslash and quote escaped, a newline a centred line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_nodes(steps: list[Step], actions: dict[tuple[str, str], Action], indent: str) -> Iterator[str]:
    styles: dict[tuple[Action | None, str], str] = {}  # a few (action, shape) pairs for thousands of steps
    for step in steps:
        key = (action_of(step, actions), shape_of(step))
        style = styles.get(key)
        if style is None:
            look = ACTIONS[key[0]]
            style = styles[key] = f", shape={SHAPES[key[1]][0]}, fillcolor={_q(look.fill)}, color={_q(look.line)}];"
        yield f"{indent}{_q(step.id)} [label={_q(step_label(step))}{style}"


def _dot_edges(plan: Plan) -> Iterator[str]:
    """Each edge with its rule's reason in a few words, in full as the tooltip; none for step order."""
    quoted = {step.id: _q(step.id) for step in plan.steps}
    attrs: dict[tuple[str, str], str] = {}
    for d in plan.dependencies:
        key = (d.rule, d.kind)
        text = attrs.get(key)
        if text is None:
            words = label(d.rule)
            parts = [f"label={_q(words)}", f"tooltip={_q(reason(d.rule))}"] if words else []
            parts += ["style=dashed"] if d.kind == "orders" else []
            text = attrs[key] = f" [{', '.join(parts)}];" if parts else ";"
        yield f"  {quoted[d.before]} -> {quoted[d.after]}{text}"


def _dot_legend(plan: Plan, actions: dict[tuple[str, str], Action]) -> Iterator[str]:
    """One column of samples: a fill per action, a shape per kind of step, a line per kind of edge."""
    looks, shapes, kinds = _used(plan, actions)
    yield '  subgraph "cluster_legend" {'
    yield '    label="Legend"; style="rounded,dashed"; color="#999999"; fontsize=10;'
    yield '    node [fontsize=9, height=0.25, width=1.6];'
    column: list[tuple[str, str]] = []  # (first, last) node of each sample, top to bottom
    for action in looks:
        look = ACTIONS[action]
        column.append((f"legend/{look.word}",) * 2)
        yield (f"    {_q(column[-1][0])} [label={_q('fill: ' + look.word)}, shape=box, style=\"rounded,filled\", "
               f"fillcolor={_q(look.fill)}, color={_q(look.line)}];")
    for shape in shapes:
        column.append((f"legend/{shape}",) * 2)
        yield f"    {_q(column[-1][0])} [label={_q(SHAPES[shape][2])}, shape={SHAPES[shape][0]}, fillcolor=white];"
    for kind, style, words in (("requires", "solid", "needed first"), ("orders", "dashed", "order only")):
        if kind in kinds:
            column.append((f"legend/{kind}", f"legend/{kind}/to"))
            yield f'    "legend/{kind}" [label="", shape=point, width=0.05];'
            yield f'    "legend/{kind}/to" [label="", shape=point, width=0.05];'
            yield f'    "legend/{kind}" -> "legend/{kind}/to" [label={_q(words)}, style={style}];'
    yield from (f"    {_q(a[1])} -> {_q(b[0])} [style=invis];" for a, b in zip(column, column[1:]))
    yield "  }"


def render_dot(plan: Plan) -> str:
    actions = _actions(plan)
    vms, host = _by_vm(plan)
    lines = list(_DOT_HEAD)
    for vm, steps in vms.items():
        look = ACTIONS[actions.get(("VM", vm))] if ("VM", vm) in actions else ACTIONS[None]
        lines.append(f"  subgraph {_q('cluster_' + vm)} {{")
        lines.append(f"    label={_q('VM ' + vm)}; style=rounded; color={_q(look.line)}; penwidth=1.5;")
        lines += _dot_nodes(steps, actions, "    ")
        lines.append("  }")
    lines += _dot_nodes(host, actions, "  ")
    lines += _dot_legend(plan, actions)
    lines += _dot_edges(plan)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _m(text: str) -> str:
    """A Mermaid quoted label: quotes and markup as entities, a newline a line break."""
    escaped = text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return '"' + escaped.replace("\n", "<br/>") + '"'


def _class(action: Action | None) -> str:
    """A Mermaid class name: the action's enum name (`create`, `update`...), `host` for none."""
    return action.name.lower() if action is not None else "host"


def render_mermaid(plan: Plan) -> str:
    """Mermaid node ids are `s<i>` in step-id order; the label is the step's op (and resource)."""
    actions = _actions(plan)
    number = {step.id: i for i, step in enumerate(plan.steps)}
    vms, host = _by_vm(plan)

    def node(step: Step, indent: str) -> str:
        left, right = SHAPES[shape_of(step)][1]
        return f"{indent}s{number[step.id]}{left}{_m(step_label(step))}{right}:::{_class(action_of(step, actions))}"

    lines = ["flowchart TB"]
    for group, (vm, steps) in enumerate(vms.items()):
        lines.append(f"  subgraph g{group} [{_m('VM ' + vm)}]")
        lines += [node(step, "    ") for step in steps]
        lines.append("  end")
    lines += [node(step, "  ") for step in host]
    looks, shapes, kinds = _used(plan, actions)
    lines.append(f"  subgraph legend [{_m('Legend')}]")
    lines += [f"    l_{_class(a)}[{_m('fill: ' + ACTIONS[a].word)}]:::{_class(a)}" for a in looks]
    lines += [f"    l_{shape}{SHAPES[shape][1][0]}{_m(SHAPES[shape][2])}{SHAPES[shape][1][1]}" for shape in shapes]
    if "requires" in kinds:
        lines.append(f'    l_requires[{_m("step")}] -->|needed first| l_requires_to[{_m("next")}]')
    if "orders" in kinds:
        lines.append(f'    l_orders[{_m("step")}] -.->|order only| l_orders_to[{_m("next")}]')
    lines.append("  end")
    for d in plan.dependencies:
        arrow = "-.->" if d.kind == "orders" else "-->"
        text = label(d.rule)
        lines.append(f"  s{number[d.before]} {arrow}{f'|{text}|' if text else ''} s{number[d.after]}")
    lines += [f"  classDef {_class(a)} fill:{look.fill},stroke:{look.line},color:#000" for a, look in ACTIONS.items()
              if a is not Action.ADOPT or a in looks]  # adopt's only in a plan that adopts
    return "\n".join(lines) + "\n"
