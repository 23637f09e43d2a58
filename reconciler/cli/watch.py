"""`reconciler watch PATH... [--host H] [--resync S] [--debounce S] ...`: the agent.

CLI layer: checks the flags, takes the host's agent lock for the agent's whole life (a
second `watch` or an `apply` fails at once naming it), opens the host, builds the
manifest file watcher (watchfiles, the only module that imports it) and runs
`reconciler.agent.loop.Agent` until SIGTERM/SIGINT: then no new step starts, the one in
flight finishes and is recorded, the lock is released, exit 0. SIGHUP: a pass now
(trigger `signal`), manifests reloaded and the host observed whole.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reconciler.errors import UsageError

if TYPE_CHECKING:
    from reconciler.agent.git import GitPull
    from reconciler.agent.loop import AgentSettings, FileWatch
    from reconciler.agent.metrics import Metrics
    from reconciler.cli.hosts import HostSpec
    from reconciler.execute.settings import ExecuteSettings

YAML_SUFFIXES = (".yaml", ".yml")
# watchfiles' thread wakes this often to look for a settled batch (and the stop event):
# a change reaches the agent 1-2 steps after it is made, and an idle agent wakes 5 times a
# second, its only cost when nothing changes (measured: 50 ms steps cost 0.04 CPU s a minute).
WATCH_STEP_MS = 200


def _seconds(flag: str, minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: {text!r} is not a number of seconds") from None
        if not value >= minimum or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{flag}: {text} is out of range; give {minimum:g} seconds or more")
        return value
    return parse


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--max-destroy: {text!r} is not a whole number of VMs (0 or more)")
    return int(text)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="the agent: keep the host converged to the manifests",
        description="Run until SIGTERM/SIGINT: one pass (load, observe, plan, execute) whenever a manifest "
        "changes, the host drifts, or the resync timer fires. Invalid manifests are reported once and "
        "never acted on; the last good ones stay in force. `reconciler status` shows where it stands.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="manifest files or directories (with --git: inside the repository, default all of it)")
    parser.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)")
    parser.add_argument("--resync", type=_seconds("--resync", 1), default=300.0, metavar="SECONDS",
                        help="observe the whole host at least this often (default 300)")
    parser.add_argument("--debounce", type=_seconds("--debounce", 0), default=0.2, metavar="SECONDS",
                        help="quiet time after a manifest change before the pass (default 0.2; watchfiles adds its own 0.2)")
    parser.add_argument("--log-format", choices=("text", "json"), dest="watch_log_format",
                        help="log lines as text (default) or one JSON object per line (journald, Loki)")
    parser.add_argument("--metrics", metavar="ADDR", help="serve Prometheus metrics, e.g. 127.0.0.1:9150")
    parser.add_argument("--max-destroy", type=_count, metavar="N",
                        help="refuse a pass that would stop or destroy more than N VMs (default: half the managed ones)")
    parser.add_argument("--drift", choices=("correct", "warn"), default="correct",
                        help="what to do about drift: correct it (default) or only report it")
    parser.add_argument("--git", metavar="URL", help="fetch the manifests from this repository (fast-forwards only)")
    parser.add_argument("--branch", metavar="B", default="main", help="with --git: the branch to follow (default main)")
    parser.add_argument("--interval", type=_seconds("--interval", 1), default=60.0, metavar="SECONDS",
                        help="with --git: fetch this often (default 60)")
    parser.add_argument("--parallelism", type=int, metavar="N", help="steps run at once (default: $RECONCILER_PARALLELISM, else 4)")
    parser.set_defaults(run=run)


def _interesting(dirs: list[str], files: set[str]) -> Callable[[Any, str], bool]:
    """watchfiles filter: the named files, and below the named directories every
    *.yaml/*.yml outside hidden directories (`.git`), plus removals of what may have
    been a directory of manifests."""
    def wanted(change: Any, path: str) -> bool:
        if path in files:
            return True
        for top in dirs:
            if path.startswith(top + os.sep):
                rel = path[len(top) + 1:].split(os.sep)
                if any(part.startswith(".") for part in rel):
                    return False
                name = rel[-1]
                return name.endswith(YAML_SUFFIXES) or ("." not in name and not os.path.isfile(path))
        return False
    return wanted


def file_watch(paths: tuple[str, ...]) -> FileWatch:
    """The agent's manifest watcher: directories recursively, named files through their
    directory (an editor's rename-over replaces the file, and with it a watch on it)."""
    full = [os.path.abspath(p) for p in paths]
    dirs = [p for p in full if os.path.isdir(p)]
    files = {p for p in full if not os.path.isdir(p)}
    parents = sorted({os.path.dirname(p) for p in files if os.path.isdir(os.path.dirname(p))})

    async def follow(roots: list[str], recursive: bool, changed: Callable[[], None], stop: asyncio.Event) -> None:
        from watchfiles import awatch

        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # "1 change detected": the pass line says it

        async for _ in awatch(*roots, watch_filter=_interesting(dirs, files), stop_event=stop, recursive=recursive,
                              debounce=100, step=WATCH_STEP_MS, rust_timeout=0):
            changed()

    async def run(changed: Callable[[], None], stop: asyncio.Event) -> None:
        tasks = [follow(roots, recursive, changed, stop) for roots, recursive in ((dirs, True), (parents, False)) if roots]
        await asyncio.gather(*tasks)

    return run


class _Signals:
    """SIGTERM/SIGINT set `stop` (a second one has its default effect); SIGHUP fires a pass."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.hup: Callable[[], None] = lambda: None
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._term, sig)
        self._loop.add_signal_handler(signal.SIGHUP, lambda: self.hup())

    def _term(self, sig: signal.Signals) -> None:
        logging.getLogger("reconciler.agent").info(
            "%s: stopping; the step in flight finishes (again to stop at once)", sig.name)
        self.stop.set()
        for each in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(each)

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._loop.remove_signal_handler(sig)


async def _watch(spec: HostSpec, settings: AgentSettings, metrics: Metrics) -> None:
    from reconciler.agent.loop import Agent
    from reconciler.cli.hosts import open_host

    stop = asyncio.Event()
    signals = _Signals(stop)
    try:
        async with open_host(spec) as ports:
            agent = Agent(settings, ports, stop, file_watch(settings.paths), metrics)
            signals.hup = agent.reload
            await agent.run()
    finally:
        signals.close()


def _setup_logging(args: argparse.Namespace) -> None:
    """The agent logs each pass and step (INFO) by default, one level more than other
    verbs (-q: warnings only, -v: DEBUG); `watch --log-format` as `reconciler --log-format`."""
    from reconciler.cli.main import verbosity
    from reconciler.logs import setup

    setup(verbosity(args) + 1, args.watch_log_format or args.log_format)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.hostlock import agent_lock
    from reconciler.cli.hosts import select_host
    from reconciler.execute.settings import resolve_settings

    execute = resolve_settings(args.parallelism)
    spec = select_host(args.host)
    if args.git is None and not args.paths:
        raise UsageError("watch needs the manifests: name files or directories, or a repository with --git URL")
    _setup_logging(args)
    with agent_lock(spec, "watch"):
        pull, paths = _git(args, spec)
        _run_agent(args, spec, execute, pull, paths)
    return 0


def _git(args: argparse.Namespace, spec: HostSpec) -> tuple[GitPull | None, tuple[str, ...]]:
    """With --git: the clone, made or fast-forwarded now (a failure stops here, exit 1),
    and the manifest paths inside it; else the paths as given."""
    if args.git is None:
        return None, tuple(args.paths)
    from reconciler.agent.git import GitError, GitPull
    from reconciler.cli.hostlock import git_dir

    try:
        pull = GitPull(args.git, args.branch, git_dir(spec), args.interval)
        asyncio.run(pull.sync())
    except GitError as exc:
        raise UsageError(str(exc)) from None
    inside = []
    for path in args.paths or ["."]:
        if os.path.isabs(path) or ".." in path.split(os.sep):
            raise UsageError(f"{path}: with --git, name paths inside the repository (relative, no ..)")
        inside.append(str(pull.dest / path))
    return pull, tuple(inside)


def _run_agent(args: argparse.Namespace, spec: HostSpec, execute: ExecuteSettings, pull: GitPull | None,
               paths: tuple[str, ...]) -> None:
    from reconciler.agent.loop import AgentSettings
    from reconciler.agent.metrics import Metrics
    from reconciler.cli.hostlock import status_path

    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file or directory; watch needs the manifests (or their directory) "
                             "to exist when it starts")
    settings = AgentSettings(paths=paths, host=str(spec), status_path=status_path(spec), execute=execute,
                             resync_s=args.resync, debounce_s=args.debounce, max_destroy=args.max_destroy,
                             drift=args.drift, git_pull=pull)
    metrics = Metrics()
    stop_serving = metrics.serve(args.metrics) if args.metrics is not None else None
    try:
        asyncio.run(_watch(spec, settings, metrics))
    finally:
        if stop_serving is not None:
            stop_serving()
