"""GitOps through the agent (issue 12): each pass records the commit it applied and
whether the manifests differ from it; with `--git URL --branch B --interval S` the agent
clones the repository under the host's state directory and applies what a fast-forward
brings (trigger `git`). Real: git (argv), a repository on disk served by file://, the
agent process (`watchsite`)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from tests.agent.watchsite import Agent, settled, vm


def _git(repo: Path, *argv: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *argv],
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


def _repo(files: dict[str, str]) -> Path:
    repo = Path(tempfile.mkdtemp(prefix="ag-git-"))
    _git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_each_pass_records_the_commit_and_whether_the_manifests_are_dirty() -> None:
    repo = _repo({"web.yaml": vm("web")})
    site = Agent({}, folder=repo)
    try:
        site.start()
        first = site.converged()
        head = _git(repo, "rev-parse", "HEAD")
        assert first["lastPass"]["git"] == {"root": str(repo.resolve()), "commit": head, "dirty": False}
        site.edit("web.yaml", vm("web", 640))
        dirty = site.wait_pass(first["lastPass"]["number"], "the edit applied",
                               lambda s: s["desiredDigest"] != first["desiredDigest"] and settled(s))
        assert dirty["lastPass"]["git"]["dirty"] is True
        assert f"commit {head[:12]} (dirty)" in site.stderr
        assert site.stop() == 0
    finally:
        site.close()


def test_watch_git_applies_what_a_fast_forward_brings() -> None:
    upstream = _repo({"web.yaml": vm("web")})
    site = Agent({}, "--git", f"file://{upstream}", "--branch", "main", "--interval", "1")
    try:
        site.start(".")
        first = site.converged()
        assert first["lastPass"]["git"]["commit"] == _git(upstream, "rev-parse", "HEAD")
        assert first["agent"]["paths"] == [str(site.state / "git")]  # the clone, under the host's state directory
        (upstream / "db.yaml").write_text(vm("db"))
        _git(upstream, "add", "-A")
        _git(upstream, "commit", "-q", "-m", "add db")
        head = _git(upstream, "rev-parse", "HEAD")
        after = site.wait_pass(first["lastPass"]["number"], "the new commit applied",
                               lambda s: s["lastPass"]["git"]["commit"] == head and settled(s) and "VM/db" in s["resources"])
        assert site.names() == ["db", "web"]
        assert after["lastPass"]["git"]["dirty"] is False
        assert "(git)" in site.stderr  # a pass answered the fetch
        assert site.stop() == 0
    finally:
        site.close()
        subprocess.run(["rm", "-rf", str(upstream)], check=False)


def test_watch_git_refuses_a_rewritten_branch_once_and_keeps_what_it_applied() -> None:
    upstream = _repo({"web.yaml": vm("web")})
    site = Agent({}, "--git", f"file://{upstream}", "--branch", "main", "--interval", "1")
    try:
        site.start(".")
        first = site.converged()
        applied = first["lastPass"]["git"]["commit"]
        (upstream / "db.yaml").write_text(vm("db"))
        _git(upstream, "add", "-A")
        _git(upstream, "commit", "-q", "--amend", "-m", "first, rewritten")  # a force-push
        deadline = time.monotonic() + 120
        while site.stderr.count("does not descend from it") < 1:
            assert time.monotonic() < deadline, site.stderr
            time.sleep(0.1)
        time.sleep(2.5)  # two more fetches of the same rewrite: said once (not a timing assertion on the agent)
        assert site.stderr.count("does not descend from it") == 1, site.stderr
        assert site.names() == ["web"]
        status = site.status()
        assert status is not None and status["lastPass"]["git"]["commit"] == applied
        assert site.stop() == 0
    finally:
        site.close()
        subprocess.run(["rm", "-rf", str(upstream)], check=False)
