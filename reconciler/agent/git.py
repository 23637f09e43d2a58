"""GitOps for the agent: which commit a pass applied, and pulling a repository itself.

`describe(paths)` runs on every pass (sync, two short `git` processes: about what a
pass can afford, see the numbers in the issue 12 report); `GitPull.sync()` runs on the
caller's timer (`interval`) and fast-forwards a clone of `--git URL --branch B`, refusing
anything else. Side effects: `git` processes only (argv lists, never a shell), always with
`-C`, a timeout, no prompt, no optional locks, and user config that could change the
output overridden. Credentials in a URL (`https://user:token@host/...`) never appear in
a message or a log line, and never persist in the clone's `.git/config`.

Trust: git refuses a repository owned by another user ("dubious ownership", the
`safe.directory` check), and the agent runs as root on repositories an operator owns. We
do not override that check (`-c safe.directory=*`): a repository's own config can name
commands (`core.fsmonitor`, filters) that `git status` would then run as root. `describe`
logs one warning naming the fix and records no commit; `GitPull` raises GitError.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)

DESCRIBE_TIMEOUT_S = 5.0  # a local `git status`; far above the milliseconds it takes
NETWORK_TIMEOUT_S = 120.0  # clone/fetch over the network
LOCAL_TIMEOUT_S = 30.0  # status, merge-base, merge in the agent's own clone

# `git rev-parse --local-env-vars`: variables that would point git at another repository
# than the one `-C` names (inherited from a hook or a developer's shell). Dropped.
_LOCAL_ENV = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT", "GIT_OBJECT_DIRECTORY", "GIT_DIR", "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE", "GIT_GRAFT_FILE", "GIT_INDEX_FILE", "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE", "GIT_PREFIX", "GIT_INTERNAL_SUPER_PREFIX", "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS",
        "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS",
    }
)

# Options before the subcommand on every call: output that does not depend on the user's
# config (quoted paths), literal pathspecs (a manifest named `*.yaml` is a file, not a
# glob), and no fsmonitor hook (a command the repository's config could name).
_GIT_OPTS = ("-c", "core.quotepath=off", "-c", "core.fsmonitor=false", "--literal-pathspecs")


class GitError(ReconcilerError):
    """A git operation the agent needs failed or was refused (not a fast-forward, a dirty
    clone, a repository git does not trust). str() is one line, credentials redacted."""


@dataclass(frozen=True)
class GitState:
    """Where the manifests of a pass came from: the work tree's `root`, the full sha of
    HEAD, and whether the manifest paths differ from that commit (`dirty`)."""

    root: str
    commit: str
    dirty: bool


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """`https://user:token@host/x` -> `https://***@host/x`, anywhere in `text`."""
    return _USERINFO.sub("***@", text)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LOCAL_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail instead of asking for a password on a tty
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `status` must not rewrite the operator's index as root
    env["LC_ALL"] = "C"  # messages we match ("dubious ownership") in English
    return env


def _last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return redact((fatal or lines or ["no message"])[0])


def _untrusted(stderr: str, where: str) -> str | None:
    if "dubious ownership" not in stderr:
        return None
    m = re.search(r"repository at '([^']*)'", stderr)
    repo = m.group(1) if m else where
    return (
        f"git refuses {repo}: it is owned by another user than the agent's (safe.directory); "
        f"if you trust its owner, run: git config --system --add safe.directory {repo}"
    )


# ---------------------------------------------------------------------------- describe

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """describe runs every pass: say each reason for not recording a commit once."""
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _run(cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", cwd, *_GIT_OPTS, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=DESCRIBE_TIMEOUT_S,
        check=False,
    )


def _start_dir(path: str) -> str:
    """The directory to run git in for a manifest path: itself, or its parent for a file
    (or the nearest existing ancestor for a path that does not exist)."""
    p = Path(os.path.realpath(path))
    while not p.is_dir() and p != p.parent:
        p = p.parent
    return str(p)


def describe(paths: Sequence[str]) -> GitState | None:
    """The commit and dirtiness of the git work tree holding the manifest `paths`.

    - The repository is the one holding the first path. If any other path lies outside
      that work tree, no commit describes the manifests: None (warned once).
    - `dirty` counts only the manifest paths: a modified, staged, deleted or untracked
      (not ignored) file under them. Changes elsewhere in the repository do not count:
      they are not part of what the pass applied.
    - None, warned once, when git is missing, the repository has no commit yet, git does
      not trust it (safe.directory), or git fails or times out; None silently when the
      paths are not in a work tree. Never raises for these: the pass goes on unrecorded.
    """
    if not paths:
        return None
    real = [os.path.realpath(p) for p in paths]
    first = _start_dir(real[0])
    try:
        top = _run(first, "rev-parse", "--show-toplevel", "--verify", "-q", "HEAD")
        if top.returncode != 0 or len(top.stdout.split("\n")) < 3:
            _no_state(first, top)
            return None
        root, commit = top.stdout.split("\n")[:2]
        outside = [p for p in real if not _inside(p, root)]
        if outside:
            _warn_once(f"git: {outside[0]} is not in the work tree {root} of {paths[0]}; "
                       "passes record no commit (keep all manifest paths in one repository)")
            return None
        status = _run(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal",
                      "--ignore-submodules=none", "--", *real)
    except FileNotFoundError:
        _warn_once("git: the git program is not installed; passes record no commit")
        return None
    except subprocess.TimeoutExpired:
        _warn_once(f"git: timed out after {DESCRIBE_TIMEOUT_S:g} s in {first}; this pass records no commit")
        return None
    if status.returncode != 0:
        _warn_once(_untrusted(status.stderr, root) or f"git status in {root}: {_last_line(status.stderr)}")
        return None
    return GitState(root=root, commit=commit, dirty=bool(status.stdout))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _no_state(where: str, proc: subprocess.CompletedProcess[str]) -> None:
    untrusted = _untrusted(proc.stderr, where)
    if untrusted:
        _warn_once(untrusted)
    elif "not a git repository" in proc.stderr:
        pass  # manifests outside git: nothing to record, nothing to say
    elif proc.returncode == 0 or proc.stdout.strip():
        # --verify -q HEAD fails quietly on an unborn branch, after printing the root
        _warn_once(f"git: {proc.stdout.split(chr(10))[0]} has no commit yet; passes record no commit")
    else:
        _warn_once(f"git rev-parse in {where}: {_last_line(proc.stderr)}")


# ---------------------------------------------------------------------------- GitPull

_BAD_BRANCH = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/\.)|(\.lock$)|(/$)|(\.$)")


class GitPull:
    """A clone at `dest` of branch `branch` of `url`, moved only by fast-forwards.

    `sync()` clones on first use (shallow: `--depth 1`; later fetches are not shallow, so
    the fetched commits connect to HEAD and `merge-base --is-ancestor` is exact), then
    fetches the branch and fast-forwards the work tree when the fetched commit descends
    from HEAD. Refused with GitError: a rewritten branch (force-push), a clone with local
    changes, a clone on another branch. `interval` (seconds) is for the caller's timer.
    Not re-entrant: one sync at a time.
    """

    def __init__(self, url: str, branch: str, dest: Path, interval: float) -> None:
        if not url or url.startswith("-"):
            raise GitError(f"--git {redact(url)!r} is not a repository URL")
        if not branch or _BAD_BRANCH.search(branch):
            raise GitError(f"--branch {branch!r} is not a valid branch name")
        if not interval > 0:
            raise GitError(f"--interval {interval:g} must be a positive number of seconds")
        self.url = url
        self.branch = branch
        self.dest = Path(dest)
        self.interval = interval
        self.shown_url = redact(url)
        # git prints some URLs' credentials without the scheme ("unable to look up
        # user:token@host" for git://): scrub the literal secrets too, not only `://x@`
        userinfo = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
        password = userinfo.partition(":")[2]
        self._secrets = sorted({x for x in (userinfo, password, unquote(password)) if x}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _run(self, *args: str, timeout: float = LOCAL_TIMEOUT_S,
                   cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
        """Run git in `cwd` (default dest): (exit status, stdout) when the status is in `ok`,
        else GitError with git's first error line (credentials redacted)."""
        where = str(cwd or self.dest)
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", where, *_GIT_OPTS, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_env(),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            proc.kill()  # never leave a git behind us (SIGTERM of the agent cancels here)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise GitError(f"git {args[0]} in {where} timed out after {timeout:g} s") from None
        code = proc.returncode if proc.returncode is not None else -1
        if code not in ok:
            stderr = err.decode(errors="replace")
            raise GitError(_untrusted(stderr, where) or f"git {args[0]} {self.shown_url} "
                           f"(branch {self.branch}): {self._scrub(_last_line(stderr))}")
        return code, out.decode(errors="replace")

    async def _git(self, *args: str, timeout: float = LOCAL_TIMEOUT_S, cwd: Path | None = None) -> str:
        return (await self._run(*args, timeout=timeout, cwd=cwd))[1]

    async def _head(self) -> str | None:
        """HEAD's sha; None on an unborn branch (`--verify -q` exits 1 silently)."""
        code, out = await self._run("rev-parse", "--verify", "-q", "HEAD", ok=(0, 1))
        return out.strip() if code == 0 else None

    async def sync(self) -> str | None:
        """Fetch; fast-forward only. The new HEAD when it moved, else None."""
        if not (self.dest / ".git").exists():
            return await self._clone()
        await self._check_clone()
        before = await self._head()
        ref = f"refs/remotes/origin/{self.branch}"
        await self._git("fetch", "--quiet", "--no-tags", "--", self.url,
                        f"+refs/heads/{self.branch}:{ref}", timeout=NETWORK_TIMEOUT_S)
        fetched = (await self._git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")).strip()
        if fetched == before:
            return None
        if before is not None and not await self._descends(before, fetched):
            raise GitError(
                f"{self.shown_url} branch {self.branch} moved from {before} to {fetched}, which "
                f"does not descend from it (force-push or rewrite); not applied: to accept it, "
                f"reset {self.dest} to {fetched} yourself (git -C {self.dest} reset --hard {fetched})"
            )
        await self._git("merge", "--ff-only", "--quiet", fetched)
        after = await self._head()
        log.info("git: %s %s fast-forwarded %s -> %s", self.shown_url, self.branch, before, after)
        return after if after != before else None

    async def _descends(self, ancestor: str, commit: str) -> bool:
        code, _ = await self._run("merge-base", "--is-ancestor", ancestor, commit, ok=(0, 1))
        return code == 0

    async def _clone(self) -> str | None:
        if self.dest.exists() and any(self.dest.iterdir()):
            raise GitError(f"{self.dest} exists and is not a git clone; give --git an empty or new directory")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        await self._git("clone", "--quiet", "--depth", "1", "--no-tags", "--single-branch",
                        "--branch", self.branch, "--", self.url, str(self.dest),
                        timeout=NETWORK_TIMEOUT_S, cwd=self.dest.parent)
        # the URL given at clone time, credentials included, would stay in .git/config;
        # every fetch names the URL itself, so keep only the redacted form there
        await self._git("remote", "set-url", "origin", self.shown_url)
        head = await self._head()
        log.info("git: cloned %s %s at %s into %s", self.shown_url, self.branch, head, self.dest)
        return head

    async def _check_clone(self) -> None:
        code, out = await self._run("symbolic-ref", "-q", "--short", "HEAD", ok=(0, 1))
        branch = out.strip() if code == 0 else "(detached HEAD)"  # -q: exit 1, no message
        if branch != self.branch:
            raise GitError(f"{self.dest} is on branch {branch!r}, not {self.branch!r}; "
                           f"check out {self.branch} there or give --git a new directory")
        dirty = await self._git("status", "--porcelain=v1", "-z", "--untracked-files=normal")
        if dirty:
            first = dirty.split("\0")[0][3:]
            raise GitError(f"{self.dest} has local changes ({first}, ...); not pulling over them: "
                           f"commit them upstream or discard them (git -C {self.dest} stash -u)")
