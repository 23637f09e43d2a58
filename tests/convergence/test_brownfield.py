"""Brownfield hosts (issue 16, "Proof"): domains another toolstack built are imported
(`reconciler import`) and adopted (`spec.adopt: true`) without a restart.

- Round trip, per example (the demo host of `scripts/demo` is `examples/openxt-desktop`
  applied with runnable hooks): apply it, forget the managed markers with Xen's own
  `xenstore-rm /vm/<uuid>/reconciler` (as if another toolstack had built the VMs), then
  `import` -> the manifests validate, `plan` adopts every VM and changes nothing else of
  them, `apply` -> `sim list` shows the same domids (nothing restarted), `plan` is empty.
- Property: hosts generated with `reconciler sim create` (xl create: random virt,
  memory, vcpus, disks, NICs, some PCI passthrough, some paused), import -> plan adopts
  and nothing else, apply -> plan empty, domids unchanged.

Real: in the round trip every CLI call is a process of its own and the host is served by
`reconciler sim serve`, so Xen's `xenstore-rm` reaches its xenstored. The property runs
the CLI entry point in this process on the embedded host (as test_fixed_point does, so
it can try more hosts). Faked: nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from reconciler.cli.main import main
from tests.conftest import with_runnable_hooks
from tests.convergence.brownfield import adopted, domids, forget_markers, import_to, not_adopt, plan_json, text_change_lines
from tests.convergence.conftest import REPO, Served, examples, reconciler, short_dir


@pytest.fixture
def served() -> Iterator[Served]:
    made = Served(short_dir("bf-"))
    yield made
    made.stop()
    shutil.rmtree(made.state, ignore_errors=True)


@pytest.mark.parametrize("folder", ["examples/server-host", "examples/openxt-desktop"])
def test_round_trip_forget_import_adopt(folder: str, served: Served, tmp_path: Path) -> None:
    manifests = with_runnable_hooks(REPO / folder, tmp_path / "example")
    host = ("--host", served.host)
    done = reconciler("apply", str(manifests), *host)
    assert done.returncode == 0, done.stdout + done.stderr
    before = domids(served.sim("list"))
    assert before, "the example started no domain"

    forgotten = forget_markers(served)
    refused = reconciler("plan", str(manifests), *host)
    assert refused.returncode == 1 and "not made by the reconciler" in refused.stderr, refused.stdout + refused.stderr

    imported = tmp_path / "imported"
    files = import_to(imported, *host)
    stubs = {name for name in before if name.endswith("-dm")}
    assert files == sorted(f"{name}.yaml" for name in forgotten if name not in stubs)

    plan = plan_json(imported, *host)
    assert adopted(plan) == sorted(name for name in forgotten if name not in stubs)
    assert not_adopt(plan) == []
    text = reconciler("plan", str(imported), *host, "--detailed-exitcode")
    assert text.returncode == 2, text.stdout + text.stderr
    assert all(line.startswith("<= VM ") for line in text_change_lines(text.stdout)), text.stdout

    done = reconciler("apply", str(imported), *host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert domids(served.sim("list")) == before
    again = reconciler("plan", str(imported), *host, "--detailed-exitcode")
    assert (again.returncode, "No changes." in again.stdout) == (0, True), again.stdout + again.stderr
    managed = sorted(name for name, dom in served.observe()["domains"].items() if dom["managed"])
    assert managed == forgotten


# ---- generated hosts ----------------------------------------------------------------

NAMES = ("web", "db", "cache", "mail")
PCI = ("0000:00:14.0", "0000:00:1f.3", "0000:02:00.0")  # the simulated laptop's xHCI, audio, Wi-Fi


@st.composite
def domains(draw: st.DrawFn) -> list[list[str]]:
    """`sim create` argv (after `create`) for 1..3 domains: random virt, memory and max,
    vcpus and max, disks (target, vdev, format, access), NICs (bridge, MAC), now and
    then a host PCI device passed through (each to one domain) or a paused domain."""
    made: list[list[str]] = []
    pci_pool = list(PCI)
    for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True)):
        virt = draw(st.sampled_from(("pv", "pvh", "hvm")))
        memory = draw(st.sampled_from((64, 128, 256)))
        vcpus = draw(st.integers(1, 3))
        argv = [name, "--virt", virt, "--memory", str(memory), "--vcpus", str(vcpus)]
        if draw(st.booleans()):
            argv += ["--max-memory", str(memory + draw(st.sampled_from((64, 512))))]
        if draw(st.booleans()):
            argv += ["--max-vcpus", str(vcpus + draw(st.integers(1, 2)))]
        if virt != "hvm":
            argv += ["--kernel", "/boot/vmlinuz"]
        for vdev in ("xvda", "xvdb")[: draw(st.integers(0, 2))]:
            fmt = draw(st.sampled_from(("raw", "qcow2")))
            access = draw(st.sampled_from(("", ",ro")))
            argv += ["--disk", f"/srv/xen/{name}-{vdev}.img,{vdev},{fmt}{access}"]
        for index in range(draw(st.integers(0, 2))):
            bridge = draw(st.sampled_from(("xenbr0", "xenbr1")))
            mac = draw(st.sampled_from(("", f",00:16:3e:00:{NAMES.index(name):02x}:{index:02x}")))
            argv += ["--nic", f"{bridge}{mac}"]
        if pci_pool and draw(st.integers(0, 3)) == 0:
            argv += ["--pci", pci_pool.pop(draw(st.integers(0, len(pci_pool) - 1)))]
        if draw(st.integers(0, 4)) == 0:
            argv.append("--paused")
        made.append(argv)
    return made


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_generated_host(created: list[list[str]]) -> None:
    state, folder = short_dir("bf-g-"), short_dir("bf-gm-")
    note("\n".join("reconciler sim create " + " ".join(argv) for argv in created))
    try:
        for argv in created:
            code, out, err = _cli("sim", "create", *argv, "--state", str(state))
            assert code == 0, out + err
        host = ("--host", f"sim:{state}")
        code, listing, err = _cli("sim", "list", "--state", str(state))
        before = domids(listing)
        assert sorted(before) == sorted(argv[0] for argv in created)

        code, out, err = _cli("import", *host, "--out", str(folder))
        assert code == 0, out + err
        texts = [p.read_text() for p in sorted(folder.glob("*.yaml"))]
        note("\n".join(texts))
        code, out, err = _cli("import", *host)  # same host, same bytes: stdout is the files, in name order
        assert (code, out) == (0, "".join(f"---\n{text}" for text in texts)), err
        code, out, err = _cli("validate", str(folder))
        assert code == 0, out + err
        code, out, err = _cli("plan", str(folder), *host, "--format", "json")
        assert code == 0, out + err
        plan = json.loads(out)
        assert adopted(plan) == sorted(before)
        assert not_adopt(plan) == []

        code, out, err = _cli("apply", str(folder), *host)
        assert code == 0, out + err
        code, out, err = _cli("plan", str(folder), *host, "--detailed-exitcode")
        assert (code, "No changes." in out) == (0, True), out + err
        code, listing, err = _cli("sim", "list", "--state", str(state))
        assert domids(listing) == before
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


HVM_HOST = [  # always tried: the derandomized draws need not include an HVM guest
    ["web", "--virt", "hvm", "--memory", "256", "--vcpus", "2", "--max-vcpus", "4", "--disk", "/srv/xen/web.qcow2,hda,qcow2",
     "--disk", "/srv/xen/install.iso,hdc,raw,ro", "--nic", "xenbr0", "--pci", "0000:00:1f.3"],
    ["db", "--virt", "hvm", "--memory", "128", "--max-memory", "512", "--nic", "xenbr1,00:16:3e:00:01:00", "--paused"],
]


@examples(8)
@example(HVM_HOST)
@given(domains())
def test_generated_host_import_then_plan_only_adopts(created: list[list[str]]) -> None:
    check_generated_host(created)
