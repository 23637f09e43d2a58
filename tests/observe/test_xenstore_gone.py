"""A domain the hypervisor lists whose xenstore tree was removed (`xenstore-rm
/local/domain/<domid>`, issue 12): the observer reports it, matched by uuid to the
reconciler's record under /vm/<uuid>/reconciler when that survived. Pure: `fold` of
nodes and an `xl list`, what `observe_host` and the agent's live observer both use."""

from __future__ import annotations

from reconciler.model.host import BUILDING, DomainStatus
from reconciler.observe.host import fold

UUID = "5e1f0c3a-7d2b-4e8a-9c61-0b3f2d4a6e71"
LISTED = [DomainStatus(0, "Domain-0", "00000000-0000-0000-0000-000000000000", "running", 1024, 2),
          DomainStatus(1, "db", UUID, "running", 64, 1)]
LEFT = {"/local/domain/0/name": "Domain-0", f"/vm/{UUID}/name": "db", "/libxl/1/type": "pv"}


def test_listed_domain_without_tree_is_observed_with_its_surviving_marker() -> None:
    nodes = {**LEFT, f"/vm/{UUID}/reconciler/managed": "1", f"/vm/{UUID}/reconciler/digest": "abc"}
    state = fold(nodes, LISTED, [], [], [])
    info = state.domains["db"]
    assert (info.domid, info.uuid, info.power, info.managed, info.digest, info.xenstore_gone) == (
        1, UUID, "running", True, "abc", True)
    assert "vm" not in state.vms and "db" not in state.vms
    assert any("domain 1 (db) is listed by the hypervisor but its xenstore nodes (/local/domain/1) are gone" in p
               for p in state.problems), state.problems


def test_listed_domain_without_tree_or_marker_is_not_managed() -> None:
    info = fold(LEFT, LISTED, [], [], []).domains["db"]
    assert (info.managed, info.xenstore_gone) == (False, True)


def test_build_intent_makes_it_ours() -> None:
    info = fold({**LEFT, f"{BUILDING}/{UUID}": "db"}, LISTED, [], [], []).domains["db"]
    assert (info.managed, info.unfinished, info.xenstore_gone) == (True, True, True)


def test_dead_domains_leftover_record_adds_no_domain() -> None:
    nodes = {**LEFT, f"/vm/{UUID}/reconciler/managed": "1"}
    state = fold(nodes, LISTED[:1], [], [], [])
    assert dict(state.domains) == {}
    assert UUID in state.vm_records


def test_a_listing_that_cannot_name_it_takes_the_name_under_vm() -> None:
    """Real `xl list` reads names from xenstore and prints `(null)` without them."""
    listed = [LISTED[0], DomainStatus(1, "(null)", UUID.upper(), "running", 64, 1)]
    nodes = {**LEFT, f"/vm/{UUID}/reconciler/managed": "1"}
    info = fold(nodes, listed, [], [], []).domains["db"]
    assert (info.domid, info.uuid, info.managed) == (1, UUID, True)
    assert "domain-1" in fold(LEFT, [LISTED[0], DomainStatus(1, "(null)", "", "running", 64, 1)], [], [], []).domains
