"""Import from captured dumps (issue 16, "Proof"): for every real `xenstore-ls` dump in
tests/data, `reconciler import --observed DUMP` writes manifests that validate, and
`plan` of them against the same dump only adopts: `<= adopt` lines, no other change.

Two things a dump may hold that no manifest can adopt as it is, each proved here too:
- a domain whose name manifests refuse (`guest_centos7`): it is imported under a valid
  name (`guest-centos7`), and the plan refuses to adopt it under another name, saying
  to `xl rename` it; once renamed (done on a copy of the dump, in the two nodes
  `xl rename` writes: `/local/domain/<domid>/name` and `/vm/<uuid>/name`) the same
  import plans only `<= adopt`.
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

from tests.convergence.brownfield import adopted, import_to, not_adopt, plan_json, reconciler, text_change_lines

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


def xl_renamed(dump: Path, renames: dict[str, str], dest: Path) -> Path:
    """A copy of `dump` as it reads after `xl rename OLD NEW` for each pair: libxl
    rewrites the domain's `name` nodes (`/local/domain/<domid>/name`, `/vm/<uuid>/name`)."""
    text = dump.read_text()
    for old, new in renames.items():
        text = re.sub(rf'(^|[\s/])name = "{re.escape(old)}"', rf'\1name = "{new}"', text, flags=re.M)
    dest.write_text(text)
    return dest


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

    renames = {domain: stem for stem, domain in names.items() if domain != stem}
    manifests = first
    if renames:
        refused = reconciler("plan", str(first), *source)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        for old, new in renames.items():
            assert f"xl rename {old} {new}" in refused.stderr, refused.stderr
            assert f"`xl rename {old} {new}`" in (first / f"{new}.yaml").read_text()  # the file says so too
        source = ("--observed", str(xl_renamed(dump, renames, tmp_path / dump.name)))
        manifests = tmp_path / "after-rename"
    files = import_to(manifests, *source)
    assert files == [f"{stem}.yaml" for stem in sorted(names)]

    plan = plan_json(manifests, *source)
    assert adopted(plan) == sorted(names)
    assert not_adopt(plan) == []
    text = reconciler("plan", str(manifests), *source, "--detailed-exitcode")
    assert text.returncode == 2, text.stdout + text.stderr
    lines = text_change_lines(text.stdout)
    assert len(lines) == len(names) and all(line.startswith("<= VM ") for line in lines), text.stdout


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
    disk; the header says so and how to avoid it (it once said the diff would match it)."""
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
