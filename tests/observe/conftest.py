"""Observer tests. What is real: the three xenstore dumps captured from real Xen hosts
(tests/data/xenstore-dumps, read by the real `drivers.dump` parser) and the real CLI
entry point `reconciler.cli.main.main`, run in-process. What is synthetic: the small
node tables built in test_synthetic.py for cases no real dump shows (failed hotplug,
truncated values, garbage domids); they follow the layout of reference/xen.md section 2.
Nothing is mocked."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.dump import load_dump
from reconciler.model.observed import ObservedState
from reconciler.observe import observe_tree

DUMPS = Path(__file__).resolve().parents[1] / "data" / "xenstore-dumps"
HVM_2019 = "xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"
RPI4_2022 = "xen-devel-2022-11-rpi4-pvh-phy-xenstore-ls.txt"
PCI_2021 = "xen-devel-2021-09-pci-backend-grep.txt"


def observe_dump(name: str) -> ObservedState:
    dump = load_dump(str(DUMPS / name))
    return observe_tree(dump.nodes, truncated=frozenset(dump.truncated))


@pytest.fixture(scope="module")
def hvm() -> ObservedState:
    return observe_dump(HVM_2019)


@pytest.fixture(scope="module")
def rpi4() -> ObservedState:
    return observe_dump(RPI4_2022)


@pytest.fixture(scope="module")
def pci() -> ObservedState:
    return observe_dump(PCI_2021)
