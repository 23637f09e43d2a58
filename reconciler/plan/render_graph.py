"""The action graph as Graphviz dot or Mermaid, for a picture of the start order.

Pure: Plan -> str, sorted (VM clusters by name, steps by id, edges by (before, after)),
so the same Plan gives byte-identical text. Called by `reconciler plan --format
dot|mermaid`. Edges are labelled with the rule that made them; edges that only order
(a priority tie-break: a failure does not skip past them) are dashed.
"""

from __future__ import annotations

from collections import defaultdict

from reconciler.plan.build import Plan


def _by_vm(plan: Plan) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for step in plan.steps:  # sorted by id
        groups[step.vm].append(step.id)
    return dict(sorted(groups.items()))


def render_dot(plan: Plan) -> str:
    lines = ["digraph plan {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for number, (vm, ids) in enumerate(_by_vm(plan).items()):
        lines.append(f'  subgraph "cluster_{number}" {{')
        lines.append(f'    label="VM {vm}";')
        lines += [f'    "{sid}";' for sid in ids]
        lines.append("  }")
    lines += [f'  "{d.before}" -> "{d.after}" [label="{d.rule}"{", style=dashed" if d.kind == "orders" else ""}];'
              for d in plan.dependencies]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_mermaid(plan: Plan) -> str:
    """Mermaid node ids are `s<i>` in step-id order; the label is the step id."""
    number = {step.id: i for i, step in enumerate(plan.steps)}
    lines = ["flowchart LR"]
    for group, (vm, ids) in enumerate(_by_vm(plan).items()):
        lines.append(f'  subgraph g{group} ["VM {vm}"]')
        lines += [f'    s{number[sid]}["{sid}"]' for sid in ids]
        lines.append("  end")
    lines += [f"  s{number[d.before]} {'-.->' if d.kind == 'orders' else '-->'}|{d.rule}| s{number[d.after]}"
              for d in plan.dependencies]
    return "\n".join(lines) + "\n"
