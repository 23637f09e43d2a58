"""GitOps of the agent (reconciler/agent/git.py) against real git repositories.

Real: the `git` program (scripts/test installs it), repositories, a bare "remote" and clones made in tmp dirs,
force-pushes, file ownership (the safe.directory case needs root). Nothing is faked; the
user's git config is kept out (an empty global config, no system config), as on a host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from pathlib import Path

import pytest

from reconciler.agent import git as gitmod
from reconciler.agent.git import GitError, GitPull, GitState, describe, redact
from reconciler.errors import ReconcilerError

@pytest.fixture(autouse=True)
def hermetic_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user or system git config, a fixed identity, and describe's warn-once memory reset."""
    cfg = tmp_path / "gitconfig"
    cfg.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@example.invalid")
    monkeypatch.setattr(gitmod, "_warned", set())
    return cfg


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def commit_all(repo: Path, msg: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A work tree: manifests/ with two files, other/ with one, one commit."""
    r = tmp_path / "repo"
    (r / "manifests").mkdir(parents=True)
    (r / "other").mkdir()
    (r / "manifests" / "web.yaml").write_text("kind: VM\n")
    (r / "manifests" / "db.yaml").write_text("kind: VM\n")
    (r / "other" / "notes.txt").write_text("x\n")
    git(r, "init", "-q", "-b", "main")
    commit_all(r, "first")
    return r


# ---------------------------------------------------------------------------- describe


def test_not_a_work_tree_is_none_and_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    (d / "vm.yaml").write_text("kind: VM\n")
    assert describe([str(d / "vm.yaml")]) is None
    assert describe([]) is None
    assert not caplog.records


def test_clean_tree_gives_root_and_full_commit(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    state = describe([str(repo / "manifests")])
    assert state == GitState(root=str(repo.resolve()), commit=head, dirty=False)
    assert len(state.commit) == 40
    # a file path and a path given through a symlink describe the same
    (repo.parent / "link").symlink_to(repo / "manifests")
    assert describe([str(repo / "manifests" / "web.yaml")]) == state
    assert describe([str(repo.parent / "link")]) == state


@pytest.mark.parametrize("edit", ["modify", "stage", "delete", "untracked"])
def test_changes_under_manifest_paths_are_dirty(repo: Path, edit: str) -> None:
    web = repo / "manifests" / "web.yaml"
    if edit == "modify":
        web.write_text("kind: VM\nmemory: 2\n")
    elif edit == "stage":
        web.write_text("kind: VM\nmemory: 2\n")
        git(repo, "add", str(web))
    elif edit == "delete":
        web.unlink()
    else:
        (repo / "manifests" / "new.yaml").write_text("kind: VM\n")
    state = describe([str(repo / "manifests")])
    assert state is not None and state.dirty


def test_changes_elsewhere_in_the_repo_do_not_count(repo: Path) -> None:
    (repo / "manifests" / ".gitignore").write_text("*.swp\n")
    commit_all(repo, "ignore swap files")
    (repo / "other" / "notes.txt").write_text("changed\n")
    (repo / "untracked.txt").write_text("x\n")
    (repo / "manifests" / ".web.yaml.swp").write_text("editor\n")  # ignored: not counted
    state = describe([str(repo / "manifests")])
    assert state is not None and not state.dirty
    # the same edit is dirty for a pass whose manifests include it
    state = describe([str(repo / "manifests"), str(repo / "other")])
    assert state is not None and state.dirty


def test_manifest_names_are_literal_not_globs(repo: Path) -> None:
    (repo / "manifests" / "x[1].yaml").write_text("kind: VM\n")
    (repo / "manifests" / "x1.yaml").write_text("kind: VM\n")
    commit_all(repo)
    (repo / "manifests" / "x1.yaml").write_text("changed\n")  # x[1] as a glob matches x1
    state = describe([str(repo / "manifests" / "x[1].yaml")])
    assert state is not None and not state.dirty


def test_paths_in_two_repositories_record_nothing_and_warn_once(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "vm.yaml").write_text("kind: VM\n")
    paths = [str(repo / "manifests"), str(other / "vm.yaml")]
    with caplog.at_level(logging.WARNING):
        assert describe(paths) is None
        assert describe(paths) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "not in the work tree" in lines[0] and str(other) in lines[0]


def test_repository_without_commit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q")
    (r / "vm.yaml").write_text("kind: VM\n")
    with caplog.at_level(logging.WARNING):
        assert describe([str(r)]) is None
    assert "has no commit yet" in caplog.records[0].getMessage()


def test_git_not_installed(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.WARNING):
        assert describe([str(repo / "manifests")]) is None
    assert "not installed" in caplog.records[0].getMessage()


def test_inherited_git_dir_does_not_redirect(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    git(decoy, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))  # as inside a git hook
    state = describe([str(repo / "manifests")])
    assert state is not None and state.commit == git(repo, "--git-dir", str(repo / ".git"), "rev-parse", "HEAD")


def test_describe_does_not_rewrite_the_operators_index(repo: Path) -> None:
    index = repo / ".git" / "index"
    web = repo / "manifests" / "web.yaml"
    os.utime(web, (1, 1))  # stat changed, content not: a plain `git status` would refresh the index
    before = index.stat().st_mtime_ns, index.read_bytes()
    state = describe([str(repo / "manifests")])
    assert state is not None and not state.dirty
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@needs_root
def test_repository_owned_by_another_user(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    for p in [repo, *repo.rglob("*")]:
        os.lchown(p, 65534, 65534)
    with caplog.at_level(logging.WARNING):
        assert describe([str(repo / "manifests")]) is None
        assert describe([str(repo / "manifests")]) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "safe.directory" in line and str(repo.resolve()) in line and "\n" not in line


# ---------------------------------------------------------------------------- GitPull


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare remote (as a server holds it) and a work clone that pushes to it."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "main")
    (work / "vm.yaml").write_text("memory: 1\n")
    commit_all(work, "one")
    (work / "vm.yaml").write_text("memory: 2\n")
    commit_all(work, "two")
    git(work, "push", "-q", "origin", "main")
    return bare, work


def url_of(bare: Path) -> str:
    return f"file://{bare}"  # file:// so that --depth applies (a plain path ignores it)


def test_clone_then_fast_forward(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, work = remote
    dest = tmp_path / "agent" / "clone"
    pull = GitPull(url_of(bare), "main", dest, 30)
    assert pull.interval == 30
    first = asyncio.run(pull.sync())
    assert first == git(work, "rev-parse", "HEAD") == git(dest, "rev-parse", "HEAD")
    assert git(dest, "rev-parse", "--is-shallow-repository") == "true"
    assert asyncio.run(pull.sync()) is None  # nothing new
    (work / "vm.yaml").write_text("memory: 3\n")
    (work / "db.yaml").write_text("memory: 1\n")
    new = commit_all(work, "three")
    git(work, "push", "-q", "origin", "main")
    assert asyncio.run(pull.sync()) == new
    assert (dest / "db.yaml").read_text() == "memory: 1\n"
    assert asyncio.run(pull.sync()) is None
    for i in range(3):  # several commits in one fetch: the history still joins the shallow HEAD
        (work / "vm.yaml").write_text(f"memory: {10 + i}\n")
        new = commit_all(work, f"batch {i}")
    git(work, "push", "-q", "origin", "main")
    assert asyncio.run(pull.sync()) == new
    assert (dest / "vm.yaml").read_text() == "memory: 12\n"


@pytest.mark.parametrize("rewrite", ["amend", "reset-deeper"])
def test_force_push_is_refused(remote: tuple[Path, Path], tmp_path: Path, rewrite: str) -> None:
    bare, work = remote
    dest = tmp_path / "clone"
    pull = GitPull(url_of(bare), "main", dest, 30)
    held = asyncio.run(pull.sync())
    assert held is not None
    if rewrite == "amend":
        git(work, "commit", "-q", "--amend", "-m", "two, rewritten")
    else:
        git(work, "reset", "-q", "--hard", "HEAD~1")
        (work / "vm.yaml").write_text("memory: 9\n")
        commit_all(work, "other history")
    git(work, "push", "-q", "--force", "origin", "main")
    rewritten = git(work, "rev-parse", "HEAD")
    with pytest.raises(GitError) as exc:
        asyncio.run(pull.sync())
    msg = str(exc.value)
    assert held in msg and rewritten in msg and "force-push" in msg and "reset --hard" in msg
    assert "\n" not in msg and isinstance(exc.value, ReconcilerError)
    assert git(dest, "rev-parse", "HEAD") == held  # nothing applied
    # refused again on the next try, not silently accepted
    with pytest.raises(GitError):
        asyncio.run(pull.sync())


def test_dirty_clone_is_refused(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, work = remote
    dest = tmp_path / "clone"
    pull = GitPull(url_of(bare), "main", dest, 30)
    held = asyncio.run(pull.sync())
    (work / "vm.yaml").write_text("memory: 4\n")
    commit_all(work)
    git(work, "push", "-q", "origin", "main")
    (dest / "local.yaml").write_text("hand edit\n")
    with pytest.raises(GitError, match=r"local changes \(local.yaml, \.\.\.\)"):
        asyncio.run(pull.sync())
    assert git(dest, "rev-parse", "HEAD") == held


def test_clone_on_another_branch_is_refused(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, _ = remote
    dest = tmp_path / "clone"
    pull = GitPull(url_of(bare), "main", dest, 30)
    asyncio.run(pull.sync())
    git(dest, "checkout", "-q", "--detach")
    with pytest.raises(GitError, match="detached HEAD"):
        asyncio.run(pull.sync())


def test_dest_that_is_not_a_clone(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, _ = remote
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "file").write_text("x")
    with pytest.raises(GitError, match="not a git clone"):
        asyncio.run(GitPull(url_of(bare), "main", dest, 30).sync())


def test_missing_branch_is_one_line(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, _ = remote
    with pytest.raises(GitError) as exc:
        asyncio.run(GitPull(url_of(bare), "nope", tmp_path / "c", 30).sync())
    assert "\n" not in str(exc.value) and "nope" in str(exc.value)


@pytest.mark.parametrize("branch", ["", "-x", "a..b", "a b", "a:b", "x.lock"])
def test_bad_branch_names(branch: str, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a valid branch name"):
        GitPull("file:///x", branch, tmp_path, 30)


@pytest.mark.parametrize("scheme", ["https", "git"])  # git:// errors print "user:token@host" bare
def test_credentials_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture, scheme: str) -> None:
    url = f"{scheme}://deploy:s3cret@127.0.0.1:9/hosts.git"  # discard port: refused at once
    with caplog.at_level(logging.DEBUG), pytest.raises(GitError) as exc:
        asyncio.run(GitPull(url, "main", tmp_path / "c", 30).sync())
    assert "s3cret" not in str(exc.value) and "***@127.0.0.1" in str(exc.value)
    assert all("s3cret" not in r.getMessage() for r in caplog.records)
    with pytest.raises(GitError) as exc:
        GitPull("-" + url, "main", tmp_path, 30)
    assert "s3cret" not in str(exc.value)


def test_credentials_do_not_persist_in_the_clone(
    remote: tuple[Path, Path], tmp_path: Path, hermetic_git: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bare, work = remote
    url = "https://deploy:s3cret@git.example.invalid/hosts.git"
    # the "server" behind that URL is the bare repository (git's own URL rewriting)
    hermetic_git.write_text(f'[url "file://{bare}"]\n\tinsteadOf = {url}\n')
    dest = tmp_path / "clone"
    pull = GitPull(url, "main", dest, 30)
    with caplog.at_level(logging.DEBUG):
        assert asyncio.run(pull.sync()) == git(work, "rev-parse", "HEAD")
        (work / "vm.yaml").write_text("memory: 5\n")
        new = commit_all(work)
        git(work, "push", "-q", "origin", "main")
        assert asyncio.run(pull.sync()) == new  # later fetches still authenticate
    assert "s3cret" not in (dest / ".git" / "config").read_text()
    assert caplog.records and all("s3cret" not in r.getMessage() for r in caplog.records)


def test_redact() -> None:
    assert redact("fatal: https://u:p@h/x and ssh://u@h/y") == "fatal: https://***@h/x and ssh://***@h/y"
    assert redact("git@github.com:o/r.git") == "git@github.com:o/r.git"  # scp form: a user, no secret


@needs_root
def test_clone_owned_by_another_user(remote: tuple[Path, Path], tmp_path: Path) -> None:
    bare, _ = remote
    dest = tmp_path / "clone"
    pull = GitPull(url_of(bare), "main", dest, 30)
    asyncio.run(pull.sync())
    for p in [dest, *dest.rglob("*")]:
        os.lchown(p, 65534, 65534)
    with pytest.raises(GitError, match="safe.directory") as exc:
        asyncio.run(pull.sync())
    assert "\n" not in str(exc.value)
