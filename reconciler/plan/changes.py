"""What the diff finds: per-resource changes with per-field before/after and an impact.

Pure value types (Terraform's `plans.Action` + `Change{Before, After}`, kopf's
`(op, path, old, new)`): produced by `reconciler.diff`, read by the planner and the
renderers, and recorded in the JSON plan. Nothing here touches the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from reconciler.model.common import Kind

Impact = Literal["live", "restart", "destructive"]
"""live: applied to the running domain (hotplug, mem-set, vcpu-set, v4v, xenstore);
restart: only takes effect when the domain is rebuilt; destructive: stops a VM or
detaches storage. Ordered by severity: the worst field sets a resource's impact."""

IMPACT_ORDER: dict[Impact, int] = {"live": 0, "restart": 1, "destructive": 2}

HOST = "(host)"
"""The `vm` of changes to what the host itself holds for the reconciler, no VM's: the v4v
table as a whole, pciback bindings no rule needs. Not a manifest name (none has brackets)."""
TABLE_NAME = "firewall-table"  # the name of the v4v table's own change


class Action(str, Enum):
    """What happens to a resource; the values are the symbols the text plan prints."""

    CREATE = "+"
    UPDATE = "~"
    RESTART = "-/+"
    DELETE = "-"
    # An unmanaged domain taken over on purpose (`spec.adopt: true`): marked managed, then
    # only the field changes its manifest needs; never rebuilt for the adoption itself.
    ADOPT = "<="


# A 1,000-VM plan holds thousands of FieldChanges, ResourceChanges and Steps: they have
# __slots__ (no dict per instance), which makes them smaller and their fields faster to
# read, and leaves the garbage collector fewer objects to walk.


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field: `path` is the manifest path (`spec.memory`, `spec.hvm.acpi`).

    `before` is None when the host shows nothing (or the resource is new), `after`
    None when it goes away. Values are plain JSON values; secrets are never stored
    here, `sensitive` fields carry `"(sensitive)"` on both sides.
    """

    path: str
    before: object
    after: object
    impact: Impact
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """One resource that differs. `vm` is the owning VM (the VM itself for kind VM).

    `impact` is the worst of `fields` (or of the action itself: deleting a VM or a
    Disk is destructive). `pending` marks restart-only changes that are reported but
    not applied, because the VM's `updatePolicy` is `live`. `reason` is one sentence
    for humans ("memory 2048 -> 4096 MiB within maxMemory").
    """

    kind: Kind
    name: str
    vm: str
    action: Action
    impact: Impact
    fields: tuple[FieldChange, ...] = ()
    reason: str = ""
    pending: bool = False


@dataclass(frozen=True)
class Diff:
    """Every change, sorted by (vm, kind order, name); `unmanaged` domains are listed once
    and never touched; `notes` are sentences about what could not be compared (e.g. the
    firewall of a captured dump); `preserved` are the VMs whose domain crashed and is left
    for inspection (lifecycle.onCrash preserve, or onReboot preserve for the names also in
    `rebooted`): not a change, yet the host does not match."""

    changes: tuple[ResourceChange, ...] = ()
    unmanaged: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    preserved: tuple[str, ...] = ()
    rebooted: tuple[str, ...] = ()
