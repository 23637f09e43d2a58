"""`DesiredState.origins` makes each Location when read: it must read, compare, pickle
and copy exactly like the dict of locations it stands for, and keep no YAML nodes.
Real manifests, loaded from files."""

from __future__ import annotations

import copy
import gc
import pickle
from pathlib import Path

import pytest
import yaml

from reconciler.errors import Location
from reconciler.loader import load
from reconciler.loader.origins import Origins
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
    ("Disk", "web-disks-0"): (10, 7),
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


def test_keeps_marks_not_nodes(origins: Origins) -> None:
    assert ("VM", "web") in origins and ("Disk", "web") not in origins
    for file, mark in origins._marks.values():
        assert isinstance(file, str) and isinstance(mark.line, int) and isinstance(mark.column, int)
        assert not any(isinstance(o, yaml.Node) for o in (mark, *gc.get_referents(mark)))


def test_same_as_the_eager_dict(origins: Origins, tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    eager = {key: Location(str(path), line, col) for key, (line, col) in EXPECTED.items()}
    assert origins == eager and eager == origins
    assert origins != {**eager, ("VM", "other"): Location("x")}
    ordered = {key: eager[key] for key in origins}
    assert repr(origins) == repr(ordered)
    for copied in (pickle.loads(pickle.dumps(origins)), copy.deepcopy(origins), copy.copy(origins)):
        assert type(copied) is dict and copied == eager and list(copied) == list(origins)
