"""`DesiredState.origins` makes each Location when read: it must read, compare, pickle
and copy exactly like the dict of locations it stands for, and keep no YAML nodes.
Real manifests, loaded from files."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from reconciler.errors import Location
from reconciler.loader import load
from reconciler.loader.documents import to_resource
from reconciler.loader.locate import mark_for
from reconciler.loader.origins import Origins, name_marks
from reconciler.loader.yamlsrc import Limits, parse_documents
from reconciler.model import Kind

MANIFEST = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata:
  name: web
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  disks:
    - {target: /a.img, vdev: xvda}
    - {name: web-data, target: /b.img, vdev: xvdb}
---
apiVersion: xen.reconciler/v1
kind: Disk
metadata: {name: web-cd}
spec: {vm: web, vdev: xvdc, devtype: cdrom}
"""

EXPECTED: dict[tuple[Kind, str], tuple[int, int]] = {
    ("Disk", "web-cd"): (15, 18),
    ("Disk", "web-data"): (11, 14),
    ("Disk", "web-xvda"): (10, 7),
    ("VM", "web"): (4, 9),
}


@pytest.fixture
def origins(tmp_path: Path) -> Origins:
    path = tmp_path / "web.yaml"
    path.write_text(MANIFEST)
    state = load([str(path)]).state
    assert state is not None and isinstance(state.origins, Origins)
    return state.origins


def test_locations(origins: Origins, tmp_path: Path) -> None:
    assert list(origins) == sorted(EXPECTED, key=lambda k: k[1])  # by name, as the tables
    assert len(origins) == 4
    for key, (line, col) in EXPECTED.items():
        assert origins[key] == Location(str(tmp_path / "web.yaml"), line, col)
    assert origins.get(("VM", "nosuch")) is None
    with pytest.raises(KeyError):
        origins[("Disk", "nosuch")]


def test_keeps_places_not_nodes(origins: Origins) -> None:
    assert ("VM", "web") in origins and ("Disk", "web") not in origins
    for place in origins._places.values():
        assert [type(part) for part in place] == [str, int, int]


def test_same_as_the_eager_dict(origins: Origins, tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    eager = {key: Location(str(path), line, col) for key, (line, col) in EXPECTED.items()}
    assert origins == eager and eager == origins
    assert origins != {**eager, ("VM", "other"): Location("x")}
    ordered = {key: eager[key] for key in origins}
    assert repr(origins) == repr(ordered)
    for copied in (pickle.loads(pickle.dumps(origins)), copy.deepcopy(origins), copy.copy(origins)):
        assert type(copied) is dict and copied == eager and list(copied) == list(origins)


def test_name_marks_are_the_walked_marks(tmp_path: Path) -> None:
    """`name_marks` finds each list once; every mark is the one a walk from the root finds,
    with merge keys and named and unnamed items."""
    text = (
        "apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {name: web}\n"
        "spec:\n  virt: pv\n  kernel: /k\n  memory: 64\n"
        "  disks:\n    - &d {target: /a, vdev: xvda}\n    - {<<: *d, vdev: xvdb, name: web-b}\n"
        "  nics: [{bridge: xenbr0}]\n  v4vRules: ['myself -> 0:80']\n"
    )
    documents, problems = parse_documents("web.yaml", text, Limits())
    assert not problems
    (document,) = documents
    resource, problems = to_resource(document)
    assert resource is not None, problems
    marks = name_marks(resource, document.node)
    assert set(marks) == {(), ("spec", "disks", 0), ("spec", "disks", 1), ("spec", "nics", 0), ("spec", "v4vRules", 0)}
    for path, mark in marks.items():
        walked = mark_for(document.node, (*path, "name") if path else ("metadata", "name"))
        assert (mark.line, mark.column) == (walked.line, walked.column)
    assert (marks[("spec", "disks", 1)].line, marks[("spec", "disks", 1)].column) == (9, 33)  # its name
    assert (marks[("spec", "v4vRules", 0)].line, marks[("spec", "v4vRules", 0)].column) == (11, 13)  # the unnamed item itself
