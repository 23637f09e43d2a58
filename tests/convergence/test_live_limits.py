"""Convergence of the changes xl cannot make live (issue 13, part B), on the simulated
host through the CLI (in process, embedded host): apply, change the manifest, `plan`
shows the restart impact with its reason (pending under updatePolicy live, a rebuild
under restart) or the live media step, apply, then `plan` has no changes and the host
holds what the manifest says."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.convergence.conftest import short_dir
from tests.convergence.test_fixed_point import _cli

BOX = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: box}
spec:
  virt: hvm
  memory: 128
  updatePolicy: POLICY
  disks:
    - {name: root, target: /srv/box.img, vdev: hda}
    - {name: cd, devtype: cdrom, target: /srv/iso/a.iso, vdev: hdc}
  nics:
    - {name: lan, type: ioemu, model: e1000}
"""


class Host:
    def __init__(self) -> None:
        self.folder, self.state = short_dir("ll-m-"), short_dir("ll-")
        self.manifests = self.folder / "box.yaml"
        self.host = f"sim:{self.state}"

    def write(self, text: str) -> None:
        self.manifests.write_text(text)

    def apply(self) -> str:
        code, out, err = _cli("apply", str(self.manifests), "--host", self.host)
        assert code == 0, out + err
        return out

    def plan(self) -> tuple[int, str]:
        code, out, err = _cli("plan", str(self.manifests), "--host", self.host, "--detailed-exitcode")
        assert code in (0, 2), out + err
        return code, out

    def converged(self) -> None:
        code, out = self.plan()
        assert (code, "No changes." in out) == (0, True), out

    def observe(self) -> dict[str, Any]:
        code, out, err = _cli("observe", "--host", self.host, "--format", "json")
        assert code == 0, err
        data: dict[str, Any] = json.loads(out)
        return data

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def site() -> Iterator[Host]:
    host = Host()
    yield host
    host.close()


def _start(site: Host, text: str) -> int:
    site.write(text)
    site.apply()
    site.converged()
    domid: int = site.observe()["domains"]["box"]["domid"]
    return domid


EDITS = {
    "emulated disk added": (
        "    - {name: cd, devtype: cdrom, target: /srv/iso/a.iso, vdev: hdc}\n",
        "    - {name: cd, devtype: cdrom, target: /srv/iso/a.iso, vdev: hdc}\n"
        "    - {name: data, target: /srv/data.img, vdev: hdb}\n",
        "hdb is an emulated disk of HVM guest box", "box-disk-832"),
    "emulated NIC added": (
        "    - {name: lan, type: ioemu, model: e1000}\n",
        "    - {name: lan, type: ioemu, model: e1000}\n    - {name: wan, model: rtl8139}\n",
        "NIC 1 is an emulated NIC of HVM guest box", "box-nic-1"),
    "emulated disk removed": (
        "    - {name: cd, devtype: cdrom, target: /srv/iso/a.iso, vdev: hdc}\n", "",
        "hdc is an emulated CD drive of HVM guest box, which QEMU keeps until the domain is rebuilt", None),
    "PCI onto a domain built without passthrough": (
        "  nics:\n", "  pci:\n    - {name: wifi, bdf: \"0000:02:00.0\"}\n  nics:\n",
        "box was built without passthrough", "box-pci-0"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_pending_under_live_then_rebuilt_under_restart(site: Host, edit: str) -> None:
    old, new, reason, appears = EDITS[edit]
    first = _start(site, BOX.replace("POLICY", "live"))
    changed = BOX.replace(old, new)
    site.write(changed.replace("POLICY", "live"))
    code, out = site.plan()
    assert code == 2 and reason in out and "restart, restart pending" in out, out
    assert "No host steps: every change above waits for a restart." in out, out
    site.apply()  # nothing to do on the host: the change waits
    assert site.observe()["domains"]["box"]["domid"] == first
    assert site.plan() == (code, out)  # still pending, said the same way

    site.write(changed.replace("POLICY", "restart"))
    code, out = site.plan()
    assert code == 2 and "VM box" in out and "only take effect on a restart, and updatePolicy is restart" in out, out
    site.apply()
    site.converged()
    seen = site.observe()
    assert seen["domains"]["box"]["domid"] != first  # rebuilt
    if appears is not None:
        assert appears in {**seen["disks"], **seen["nics"], **seen["pci"]}, seen
    else:
        assert "box-disk-5632" not in seen["disks"]
    if "PCI" in edit:
        assert seen["domains"]["box"]["passthrough"] is True


def test_cd_media_changes_live_and_ejects(site: Host) -> None:
    first = _start(site, BOX.replace("POLICY", "live"))
    for target, word in (("/srv/iso/b.iso", "xl cd-insert"), ("''", "xl cd-eject"), ("/srv/iso/c.iso", "xl cd-insert")):
        site.write(BOX.replace("POLICY", "live").replace("target: /srv/iso/a.iso", f"target: {target}"))
        code, out = site.plan()
        assert code == 2 and "~ Disk cd [live]" in out and word in out, out
        assert "0 needs restart" in out and "[restart" not in out, out
        code, shown, err = _cli("plan", str(site.manifests), "--host", site.host, "--format", "json")
        assert [(s["id"], s["op"]) for s in json.loads(shown)["actions"]] == [("disk/cd/media", "media")], shown
        site.apply()
        site.converged()
        seen = site.observe()
        assert seen["domains"]["box"]["domid"] == first  # the guest kept running: no rebuild, no re-plug
        assert seen["disks"]["box-disk-5632"]["target"] == ("" if target == "''" else target)


def test_a_media_step_interrupted_after_the_insert_is_not_done_twice(site: Host, tmp_path: Path) -> None:
    """Retry safety: media already in the drive (a retry after an interrupted step) is read
    back from the backend's params and left alone."""
    import asyncio

    from drivers.sim import open_sim
    from reconciler.execute.devices import media
    from reconciler.loader import load_or_raise
    from reconciler.plan.steps import make

    _start(site, BOX.replace("POLICY", "live"))

    async def run() -> tuple[str | None, str | None]:
        from reconciler.execute.runtime import Runtime
        from reconciler.execute.settings import ExecuteSettings

        async with open_sim(site.state) as ports:
            rt = Runtime(ports, load_or_raise([str(site.manifests)]), ExecuteSettings())
            step = make("Disk", "cd", "box", "media", {"vdev": "hdc", "target": "/srv/iso/a.iso", "format": "raw"})
            again = await media(rt, step, True)  # a retry: the drive holds it already
            step = make("Disk", "cd", "box", "media", {"vdev": "hdc", "target": "/srv/iso/z.iso", "format": "raw"})
            first = await media(rt, step, True)  # a retry whose first try never reached the host
            return again, first

    again, first = asyncio.run(run())
    assert again == "the drive already holds that media" and first is None
    assert site.observe()["disks"]["box-disk-5632"]["target"] == "/srv/iso/z.iso"
