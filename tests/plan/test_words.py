"""The one table of outcome words (`reconciler.plan.words`): what the plan summary counts a
change under, and what apply's count line says once it is done. Pure: no host."""

from __future__ import annotations

import pytest

from reconciler.execute.report import Report, ResourceResult
from reconciler.model.common import Kind
from reconciler.plan.changes import HOST, Action, FieldChange, ResourceChange
from reconciler.plan.words import APPLIED, OUTCOMES, outcome


def change(kind: Kind, action: Action, *, vm: str = "db", after: object = None) -> ResourceChange:
    return ResourceChange(kind, "x", vm, action, "live", (FieldChange("spec.state", "running", after, "live"),))


@pytest.mark.parametrize(("made", "plan", "done"), [
    (change("VM", Action.CREATE), "to create", "created"),
    (change("VM", Action.UPDATE), "to change live", "updated"),
    (change("VM", Action.RESTART), "needs restart", "restarted"),
    (change("VM", Action.DELETE, after="stopped"), "to stop", "stopped"),   # state: stopped
    (change("VM", Action.DELETE), "to destroy", "destroyed"),                # removed from the manifests
    (change("Disk", Action.DELETE), "to detach", "detached"),                # the image is kept
    (change("NIC", Action.DELETE), "to unplug", "unplugged"),
    (change("PCIPassthrough", Action.DELETE), "to unplug", "unplugged"),
    (change("PCIPassthrough", Action.DELETE, vm=HOST), "to release", "released"),  # a pciback binding given back
    (change("V4VRule", Action.DELETE), "to remove", "removed"),
    (change("RPCRule", Action.DELETE), "to remove", "removed"),
    (change("VM", Action.ADOPT), "to adopt", "adopted"),                     # spec.adopt: taken over, not restarted
])
def test_each_change_has_one_plan_phrase_and_one_apply_word(made: ResourceChange, plan: str, done: str) -> None:
    assert (outcome(made).plan, outcome(made).done) == (plan, done)


def test_no_word_says_deleted_and_every_done_word_completes_has_been() -> None:
    assert all("delete" not in o.done and "delete" not in o.plan for o in OUTCOMES)
    assert APPLIED == {"created", "updated", "restarted", "stopped", "destroyed", "detached", "unplugged",
                       "released", "removed", "adopted"}


def test_apply_counts_each_outcome_in_the_table_order_and_always_failed() -> None:
    done = Report((), (ResourceResult("Disk", "a", "detached"), ResourceResult("VM", "b", "created"),
                       ResourceResult("Disk", "c", "detached"), ResourceResult("VM", "d", "unchanged")))
    assert done.summary() == "Apply complete: 1 created, 1 unchanged (restart pending), 2 detached, 0 failed."
    assert Report((), ()).summary() == "Apply complete: no changes."
