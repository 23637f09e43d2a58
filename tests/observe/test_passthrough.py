"""Whether a domain was built with passthrough reaches the diff: `fold` copies the
toolstack's `DomainStatus.passthrough` into `DomainInfo` (issue 13, part B), and
`observe` prints it where the toolstack says."""

from __future__ import annotations

import pytest

from reconciler.model.host import DomainStatus
from reconciler.observe.host import fold
from reconciler.observe.render import observed_to_data

UUID = "5e1f0c3a-7d2b-4e8a-9c61-0b3f2d4a6e71"
NODES = {"/local/domain/0/name": "Domain-0", "/local/domain/1/name": "db", "/local/domain/1/vm": f"/vm/{UUID}",
         "/local/domain/1/domid": "1", f"/vm/{UUID}/uuid": UUID, "/libxl/1/type": "hvm"}


@pytest.mark.parametrize("passthrough", [True, False, None])
def test_fold_carries_passthrough(passthrough: bool | None) -> None:
    listed = [DomainStatus(1, "db", UUID, "running", 64, 1, passthrough)]
    state = fold(NODES, listed, [], [], [])
    assert state.domains["db"].passthrough is passthrough
    shown = observed_to_data(state)["domains"]["db"]
    assert shown.get("passthrough", "absent") == ("absent" if passthrough is None else passthrough)


def test_a_domain_without_its_tree_keeps_it_too() -> None:
    listed = [DomainStatus(1, "db", UUID, "running", 64, 1, True)]
    state = fold({"/local/domain/0/name": "Domain-0"}, listed, [], [], [])
    assert state.domains["db"].passthrough is True and state.domains["db"].xenstore_gone
