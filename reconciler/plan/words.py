"""The outcome words plan and apply share: one table, read by both.

Pure. `outcome(change)` names what a change does to its resource: the phrase the text
plan's summary counts it under ("1 to detach") and the word the apply report counts it
under once done ("1 detached"). `reconciler.plan.render_text` (summary line) and
`reconciler.execute.report` (apply's count line) read only this table, so a removed disk
is "to detach" in the plan and "detached" after the apply, never "deleted". The `done`
words complete "Disk `db-xvda` has been ..." (STYLE point 11).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reconciler.plan.changes import HOST, Action, ResourceChange


Done = Literal["created", "updated", "restarted", "unchanged", "stopped", "destroyed", "detached", "unplugged",
               "released", "removed", "failed", "skipped", "adopted"]
"""Apply's words: each completes "VM `web` has been ..."."""


@dataclass(frozen=True)
class Outcome:
    key: str
    plan: str      # the plan summary's phrase: "to create" ("" for failed/skipped: apply-only)
    done: Done     # apply's word once it ran: "created"
    note: str = ""  # said after apply's count: "unchanged (restart pending)"

    def counted(self, n: int) -> str:
        """`3 created`, `1 unchanged (restart pending)`: one part of apply's count line."""
        return f"{n} {self.done}" + (f" ({self.note})" if self.note else "")


CREATE = Outcome("create", "to create", "created")
UPDATE = Outcome("update", "to change live", "updated")
RESTART = Outcome("restart", "needs restart", "restarted")
PENDING = Outcome("pending", "needs restart", "unchanged", "restart pending")  # restart-only fields left for a restart
STOP = Outcome("stop", "to stop", "stopped")              # state: stopped (the domain is destroyed, the VM kept)
DESTROY = Outcome("destroy", "to destroy", "destroyed")   # a VM removed from the manifests
DETACH = Outcome("detach", "to detach", "detached")       # a disk: the image is kept
UNPLUG = Outcome("unplug", "to unplug", "unplugged")      # a NIC or a PCI device of a VM
RELEASE = Outcome("release", "to release", "released")    # a pciback binding no rule needs: given back
REMOVE = Outcome("remove", "to remove", "removed")        # v4v firewall entries, rpc-proxy rules
ADOPT = Outcome("adopt", "to adopt", "adopted")          # an unmanaged domain taken over (spec.adopt), not restarted
FAILED = Outcome("failed", "", "failed")
SKIPPED = Outcome("skipped", "", "skipped")

OUTCOMES: tuple[Outcome, ...] = (ADOPT, CREATE, UPDATE, RESTART, PENDING, STOP, DESTROY, DETACH, UNPLUG, RELEASE, REMOVE,
                                 FAILED, SKIPPED)
"""In the order counts are printed."""
REMOVALS: tuple[Outcome, ...] = (DESTROY, STOP, DETACH, UNPLUG, RELEASE, REMOVE)
"""The plan's DELETE outcomes, in the order its summary line names them."""
APPLIED: frozenset[str] = frozenset(o.done for o in OUTCOMES if o not in (PENDING, FAILED, SKIPPED))
"""Apply's words for a change that ran and is done."""

_BY_ACTION = {Action.CREATE: CREATE, Action.UPDATE: UPDATE, Action.RESTART: RESTART, Action.ADOPT: ADOPT}
_REMOVED = {"Disk": DETACH, "NIC": UNPLUG, "PCIPassthrough": UNPLUG, "V4VRule": REMOVE, "RPCRule": REMOVE}


def outcome(change: ResourceChange) -> Outcome:
    """What `change` does once applied (PENDING is apply's, for a change nothing ran for)."""
    found = _BY_ACTION.get(change.action)
    if found is not None:
        return found
    if change.kind == "VM":  # kept with state: stopped, or removed from the manifests
        return STOP if any(f.path == "spec.state" and f.after == "stopped" for f in change.fields) else DESTROY
    if change.kind == "PCIPassthrough" and change.vm == HOST:
        return RELEASE
    return _REMOVED.get(change.kind, REMOVE)
