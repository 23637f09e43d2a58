"""`reconciler plan --format markdown`: the pull-request comment (issue 15, part D).

Real: the CLI (in-process `main`, and as a process where a user or CI runs it), the
embedded simulated host in a temp dir (applied to, then drifted through its ports), the
captured dumps, bench/manifests.py's generator for a plan too big for one comment, and
GitHub's own Markdown engine, `cmark-gfm` (Debian package), rendering what we print with
raw HTML let through (`--unsafe`): every tag in its HTML must be one we wrote.
Snapshots: review tests/plan/__snapshots__/test_markdown.ambr after `--snapshot-update`.
"""

from __future__ import annotations

import asyncio
import html
import importlib.util
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from syrupy.assertion import SnapshotAssertion

from drivers.sim import open_sim
from reconciler.cli.main import main
from reconciler.model.host import FirewallEntry
from reconciler.errors import printable
from reconciler.plan.render_markdown import COMMENT_LIMIT, MARKER, fenced, render_markdown
from tests.conftest import with_runnable_hooks
from tests.plan.test_sim_snapshots import drift
from tests.plan.test_snapshots import plan_of

REPO = Path(__file__).resolve().parents[2]
DUMP = "tests/data/xenstore-dumps/xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"
# What our Markdown may become in HTML: the table, the collapsed blocks, code, emphasis.
OUR_TAGS = {"h3", "p", "strong", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
            "details", "summary", "b"}
FENCE = re.compile(r"^(`{3,})text\n(.*?)\n\1$", re.S | re.M)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.opened.append(tag)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def gfm(markdown: str) -> tuple[str, Tags]:
    """GitHub's Markdown engine on `markdown`, raw HTML let through: (HTML, its tags)."""
    done = subprocess.run(["cmark-gfm", "--unsafe", "-e", "table", "-e", "strikethrough", "-e", "autolink"],
                          input=markdown, capture_output=True, text=True, check=True, timeout=60)
    tags = Tags()
    tags.feed(done.stdout)
    return done.stdout, tags


def blocks(markdown: str) -> list[list[str]]:
    """The lines of every fenced block, in order."""
    return [body.split("\n") for _, body in FENCE.findall(markdown)]


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "plan", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, check=False)


def md(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    assert main(["plan", *args, "--format", "markdown"]) == code
    return capsys.readouterr().out


@pytest.mark.parametrize("example", ["examples/openxt-desktop", "examples/server-host"])
def test_examples_on_an_empty_host(example: str, sim_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str],
                                   snapshot: SnapshotAssertion) -> None:
    out = md(capsys, example, "--host", f"sim:{sim_dir}").replace(str(sim_dir), "SIM")
    assert out.startswith(MARKER + "\n")
    assert out == snapshot
    _, tags = gfm(out)
    assert set(tags.opened) <= OUR_TAGS and tags.comments == [" reconciler-plan "]
    vms = sorted(set(re.findall(r"^# VM (\S+)$", out, re.M)))
    assert re.findall(r"<summary>VM <code>([^<]+)</code>", out) == vms and len(vms) >= 4
    reach = int("\nReachability:\n" in out)
    assert tags.opened.count("details") == len(vms) + reach + 1  # and Reachability when it moves, steps


def test_a_captured_dump(repo: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    out = md(capsys, "examples/openxt-desktop", "--observed", DUMP, "--detailed-exitcode", code=2)
    assert f"### Reconciler plan for `{DUMP} (captured dump)`" in out
    assert "the v4v firewall table is not in this source" in out.split("<details>")[0]  # notes: first, not collapsed
    assert "<summary>Reachability: 0 now allowed, 0 now refused; not compared</summary>" in out
    assert "Unmanaged domains (listed once, never touched): guest_centos7" in out
    assert out == snapshot


def test_lines_are_the_text_plans_own(sim_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path, snapshot: SnapshotAssertion) -> None:
    """Converged: "No changes". Drifted (memory, a NIC, a firewall entry gone, a PCI device
    handed back, and a stray entry no rule derives): every line in a block is a line of
    the text plan, each VM's block is its group of the text plan, the host-wide changes
    have their own block, and the summary line is the text plan's."""
    host = ["--host", f"sim:{sim_dir}"]
    example = str(with_runnable_hooks("examples/openxt-desktop", tmp_path / "m"))
    assert main(["apply", example, *host, "--parallelism", "1"]) == 0
    capsys.readouterr()
    converged = md(capsys, example, *host, "--detailed-exitcode")
    assert "**No changes. The host matches the manifests.**" in converged and "<details>" not in converged

    async def stray() -> None:
        async with open_sim(sim_dir) as ports:
            await ports.firewall.insert(FirewallEntry(7, 9, None, 1234, "ACCEPT"))
    asyncio.run(drift(sim_dir))
    asyncio.run(stray())
    out = md(capsys, example, *host, "--detailed-exitcode", code=2)
    assert main(["plan", example, *host]) == 0
    text = capsys.readouterr().out
    groups = text.split("\n\n")
    found = blocks(out)
    for lines in found:
        assert "\n".join(lines) in text
    by_heading = {lines[0]: lines for lines in found}
    assert {"# host", "# VM ndvm", "# VM work-linux"} <= set(by_heading)
    for heading in ("# host", "# VM ndvm", "# VM work-linux"):
        assert "\n".join(by_heading[heading]) in groups
    assert "<summary>Host-wide (v4v table, pciback): 1 to update in place; impact <b>live</b></summary>" in out
    assert f"**{text.splitlines()[-1]}**" in out
    assert {"converged": converged.replace(str(sim_dir), "SIM"), "drift": out.replace(str(sim_dir), "SIM")} == snapshot


HOSTILE = "root=/dev/xvda1 `x` ``` | a | </details><script>alert(1)</script> <!-- *b* @octocat #1 \u202e"


def test_nothing_a_manifest_or_path_holds_breaks_the_comment(tmp_path: Path) -> None:
    """A value with backticks, a fence, `|`, HTML, a comment opener, a mention and a bidi
    control; a dump path with a backtick, `|` and a newline; a VNC password: GitHub's
    engine makes of it only our tags, each value shows literally, one heading line, and
    the password nowhere."""
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(
        "apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {name: web}\nspec:\n  virt: hvm\n  memory: 512\n"
        f"  cmdline: {json.dumps(HOSTILE)}\n  display: {{type: vnc, vncPassword: hunter2-secret}}\n")
    dump = tmp_path / "a`b|c\n<i>d.txt"
    dump.write_text((REPO / DUMP).read_text())
    done = plan(str(manifest), "--observed", str(dump), "--format", "markdown")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "hunter2" not in out and '+ spec.display.vncPassword = (sensitive)' in out
    assert "\u202e" not in out and "\\u202e" in out
    page, tags = gfm(out)
    assert set(tags.opened) <= OUR_TAGS and tags.opened.count("h3") == 1
    assert tags.opened.count("details") == 3 and tags.comments == [" reconciler-plan "]
    heading = re.search(r"<h3>(.*)</h3>", page)
    assert heading is not None and html.unescape(heading[1]) == (
        f"Reconciler plan for <code>{dump} (captured dump)</code>".replace("\n", "\\n"))
    assert f'+ spec.cmdline = {printable(json.dumps(HOSTILE, ensure_ascii=False))}\n' in html.unescape(page)
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        assert row.count("<td") + row.count("<th") == 5  # Action, 3 impacts, total


def bench_manifests() -> object:
    spec = importlib.util.spec_from_file_location("bench_manifests", REPO / "bench" / "manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_plan_too_big_for_one_comment_is_cut_and_says_so(tmp_path: Path, sim_dir: Path) -> None:
    """80 VMs: the text plan is ~3 times GitHub's limit; the comment stays under it, whole
    blocks only, and its last line says what was left out and how to see it."""
    gen = bench_manifests()
    manifests = gen.generate(80, tmp_path / "manifests")  # type: ignore[attr-defined]
    gen.write_inventory(sim_dir, 80)  # type: ignore[attr-defined]
    text = plan(str(manifests), "--host", f"sim:{sim_dir}")
    done = plan(str(manifests), "--host", f"sim:{sim_dir}", "--format", "markdown")
    assert done.returncode == 0 and text.returncode == 0, done.stderr
    out = done.stdout
    assert len(text.stdout) > 2 * COMMENT_LIMIT and COMMENT_LIMIT - 1000 < len(out) <= COMMENT_LIMIT
    shown = out.count("<summary>VM ")
    last = out.rstrip("\n").rsplit("\n", 1)[-1]
    assert last == (f"**Left out to stay under GitHub's 65,536-character comment limit: the details of {80 - shown} "
                    "VMs, Reachability, the steps.** See the whole plan with `reconciler plan --format text` (or "
                    "`--format json`) on the same manifests and host.")
    _, tags = gfm(out)
    assert tags.opened.count("details") == shown and set(tags.opened) <= OUR_TAGS
    for lines in blocks(out):
        assert "\n".join(lines) in text.stdout


@pytest.mark.parametrize("limit", [3_000, 9_000, 14_000])
def test_cut_at_whole_blocks_within_any_limit(limit: int) -> None:
    plan_ = plan_of("examples/openxt-desktop", "empty")
    whole = render_markdown(plan_)
    assert len(whole) > limit
    cut = render_markdown(plan_, limit=limit)
    assert len(cut) <= limit and "Left out to stay under" in cut.splitlines()[-1]
    kept = cut.rsplit("\n\n", 1)[0]
    assert whole.startswith(kept + "\n\n")  # what is shown is the whole comment's beginning


def test_control_characters_are_escaped() -> None:
    assert printable("a\nb\tc\x1b[31md\x7f\x9b\u202e") == "a\\nb\\tc\\x1b[31md\\x7f\\x9b\\u202e"


def readme_workflow() -> dict[str, object]:
    text = (REPO / "README.md").read_text()
    found = re.search(r"```yaml\n(# \.github/workflows/plan\.yml\n.*?)```", text, re.S)
    assert found is not None
    data = yaml.safe_load(found[1])
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(("manifest", "exit_code", "first"), [
    ("kind: VM\napiVersion: xen.reconciler/v1\nmetadata: {name: idle}\nspec: {virt: pv, kernel: /k, memory: 256, "
     "state: stopped}\n", 0, "**No changes. The host matches the manifests.**"),
    ("kind: VM\napiVersion: xen.reconciler/v1\nmetadata: {name: web}\nspec: {virt: pv, kernel: /k, memory: 256}\n",
     0, "**Plan: 1 to create, 0 to change live, 0 needs restart, 0 to destroy.**"),
    ("kind: VM\napiVersion: xen.reconciler/v1\nmetadata: {name: web}\nspec: {virt: pv, kernel: /k, memroy: 256}\n",
     1, None),
])
def test_the_readme_workflow_step(manifest: str, exit_code: int, first: str | None, tmp_path: Path) -> None:
    """The README's `plan` step, run by bash as GitHub Actions runs it (`-eo pipefail`),
    with the `reconciler` this venv installs: the step passes on no changes and on
    changes, leaving plan.md for the comment step, and fails on bad manifests. The
    comment step looks for the marker the comment starts with."""
    steps = readme_workflow()["jobs"]["plan"]["steps"]  # type: ignore[index]
    script = next(s["run"] for s in steps if s.get("name") == "plan")
    assert MARKER in next(s["with"]["script"] for s in steps if "github-script" in s.get("uses", ""))
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "vm.yaml").write_text(manifest)
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "xenstore.dump").write_text((REPO / DUMP).read_text())
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == exit_code, done.stderr
    if first is not None:
        out = (tmp_path / "plan.md").read_text()
        assert out.startswith(MARKER + "\n") and first in out
    else:
        assert "memroy" in done.stderr


def test_a_fence_inside_a_block_stays_inside() -> None:
    """No text plan line starts with a fence today (every line is indented or starts with
    a word), but a block is literal whatever its lines: a line of backticks does not end it."""
    lines = ["```", "````", "</details><script>alert(1)</script>", "| a | b |"]
    page, tags = gfm(fenced(lines))
    assert tags.opened == ["pre", "code"]
    assert html.unescape(page).endswith("\n".join(lines) + "\n</code></pre>\n")
