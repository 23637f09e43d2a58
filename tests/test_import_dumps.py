"""Import from captured dumps (issue 16, "Proof"): for every real `xenstore-ls` dump in
tests/data, `reconciler import --observed DUMP` writes manifests that validate, and
`plan` of them against the same dump only adopts: `<= adopt` lines, no other change.

Two things a dump may hold that no manifest can adopt as it is, each proved here too:
- a domain whose name manifests refuse (`guest_centos7`): it is imported under a valid
  name (`guest-centos7`), matched by its uuid, and its `<= adopt` line carries the one
  change adopting it needs, `~ metadata.name: "guest_centos7" -> "guest-centos7"` (xl
  rename, live).
- a domain xenstore shows too little of to write a manifest (a grep'd dump without its
  memory): no file, and import says so on stderr, naming it.

Real data: the verbatim xen-devel dumps (first line of each names its public source);
every dump directory under tests/data is picked up, so a dump added later is proved too.
Real: the CLI in processes of its own. Faked: nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.convergence.brownfield import adopted, import_to, plan_json, reconciler, text_change_lines

DATA = Path(__file__).resolve().parent / "data"
DUMPS = sorted(p for d in DATA.iterdir() if d.is_dir() and "xenstore" in d.name for p in d.iterdir() if p.is_file())
IMPORTED_FROM = re.compile(r"^# Imported by `reconciler import` from .*?: domain '([^']+)'", re.M)
NOT_WRITTEN = re.compile(r"domain \d+ \('([^']+)'\) .*no manifest written")


def test_there_are_dumps() -> None:
    assert len(DUMPS) >= 3, DUMPS


def imported_domains(folder: Path) -> dict[str, str]:
    """{manifest name: domain name} of the files import wrote, from their header."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        header = IMPORTED_FROM.search(path.read_text())
        assert header is not None, path.read_text()
        found[path.stem] = header.group(1)
    return found


def unmanaged(dump: Path) -> list[str]:
    done = reconciler("observe", "--observed", str(dump), "--format", "json")
    assert done.returncode == 0, done.stderr
    return sorted(n for n, d in json.loads(done.stdout)["domains"].items() if not d["managed"] and not n.endswith("-dm"))


@pytest.mark.parametrize("dump", DUMPS, ids=[p.name for p in DUMPS])
def test_import_then_plan_only_adopts(dump: Path, tmp_path: Path) -> None:
    source = ("--observed", str(dump))
    first = tmp_path / "imported"
    done = reconciler("import", *source, "--out", str(first))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    names = imported_domains(first) if first.exists() else {}
    # Every domain the reconciler does not manage is imported, or import says why not.
    assert sorted([*names.values(), *NOT_WRITTEN.findall(done.stderr)]) == unmanaged(dump), done.stderr
    if not names:
        return

    files = sorted(p.name for p in first.glob("*.yaml"))
    valid = reconciler("validate", str(first))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    plan = plan_json(first, *source)
    assert adopted(plan) == sorted(names)
    # A domain whose name manifests refuse is renamed (xl rename) as it is adopted: the one
    # field its adopt line may carry, `metadata.name: old -> new`.
    assert [c for c in plan["changes"] if c["action"] != "adopt"] == []
    fields = {(c["name"], f["path"], f["before"], f["after"]) for c in plan["changes"] for f in c.get("fields") or []}
    assert fields == {(stem, "metadata.name", domain, stem) for stem, domain in names.items() if domain != stem}
    text = reconciler("plan", str(first), *source, "--detailed-exitcode")
    assert text.returncode == 2, text.stdout + text.stderr
    lines = text_change_lines(text.stdout)
    assert len(lines) == len(files) and all(line.startswith("<= VM ") for line in lines), text.stdout
    for stem, domain in names.items():
        if domain != stem:
            assert f'~ metadata.name: "{domain}" -> "{stem}"' in text.stdout, text.stdout
            assert "the plan renames the domain first (xl rename" in (first / f"{stem}.yaml").read_text()


@pytest.mark.parametrize("dump", DUMPS, ids=[p.name for p in DUMPS])
def test_import_is_stable(dump: Path) -> None:
    """Same dump, same bytes: to stdout twice."""
    first = reconciler("import", "--observed", str(dump))
    second = reconciler("import", "--observed", str(dump))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_renamed_domain_without_uuid_is_said_to_be_created_until_renamed(tmp_path: Path) -> None:
    """The 2022 dump with its domain's `vm` node gone and named `Guest_2`: nothing ties
    the file (`guest-2`) to the domain, so the plan creates a second domain on the same
    disk (no uuid to rename it by); the header says so and how to avoid it (it once said
    the diff would match it by name)."""
    real = next(p for p in DUMPS if "rpi4" in p.name)
    text = re.sub(r'^>    vm = "/vm/[0-9a-f-]+"\n', "", real.read_text(), flags=re.M)
    dump = tmp_path / "no-uuid.txt"
    dump.write_text(text.replace('name = "guest2"', 'name = "Guest_2"'))
    files = import_to(tmp_path / "imported", "--observed", str(dump))
    assert files == ["guest-2.yaml"]
    header = (tmp_path / "imported" / "guest-2.yaml").read_text()
    assert "the plan would CREATE a second domain 'guest-2'" in header and "`xl rename Guest_2 guest-2`" in header
    plan = plan_json(tmp_path / "imported", "--observed", str(dump))
    assert [(c["action"], c["name"]) for c in plan["changes"] if c["kind"] == "VM"] == [("create", "guest-2")]
