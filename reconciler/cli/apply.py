"""`reconciler apply PATH... [--host H] [--parallelism N] [--plan FILE] [--color WHEN]`: converge the host.

Composes the pipeline (this is the CLI layer): load the manifests (errors print like
`validate` on stderr, exit 1, the host is never opened), open the host, observe, diff,
plan, print the plan text (the `plan` renderer), execute it printing one line per step
as it ends (`[n/N] vm/web/create: done (0.12 s)`; a live counter on a terminal:
`reconciler.cli.progress`), the root causes again, the resources not applied, then one
count per outcome in the plan summary's words (`Apply complete: 3 created, 1 detached,
0 failed (9 steps done).`). Exit 0 when every step is done, 1 otherwise. `--plan FILE` (from
`plan --format json`) makes apply refuse unless the manifests are the ones the plan
was made from (its desired-state digest, checked before the host is opened) and the
plan made now is the reviewed one (host fingerprint and actions). Apply holds the
host's agent lock (`reconciler.cli.hostlock`) while it opens and changes the host.
SIGINT/SIGTERM: no new step starts, the running ones finish and are reported, the steps
left undone are listed, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import stat
import sys
from typing import TYPE_CHECKING, Any

from reconciler.cli.colour import add_color_option, wants_colour
from reconciler.errors import ManifestError, UsageError

if TYPE_CHECKING:
    from reconciler.cli.hosts import HostSpec
    from reconciler.execute import ExecuteSettings, Report
    from reconciler.model.state import DesiredState
    from reconciler.plan.build import Plan

STALE = "the host changed since the plan was made; run plan again"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="converge the host: plan, then carry the plan out",
        description="Compare the manifests with the host, print the plan, and carry it out: failed steps "
        "skip what depends on them, independent work continues. Exit 0 when converged, 1 otherwise.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    parser.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)")
    parser.add_argument("--parallelism", type=int, metavar="N", help="steps run at once (default: $RECONCILER_PARALLELISM, else 4)")
    parser.add_argument("--plan", metavar="FILE", help="a JSON plan from `plan --format json`: apply only if it is still what would run")
    add_color_option(parser)
    parser.set_defaults(run=run)


SAVED_PLAN_MAX_BYTES = 256 << 20  # 256 MiB: a 1,000-VM plan is a few MiB; more is not a plan


def _saved_plan(path: str) -> dict[str, Any]:
    """The saved plan of `--plan FILE`, refused in one line unless it is a plan of this format."""
    from reconciler.plan.render_json import FORMAT_VERSION

    hint = "write it with plan --format json --out FILE"
    try:
        # O_NONBLOCK: a FIFO named here must not block the open; it is then refused.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UsageError(f"--plan {path}: not a regular file; {hint}")
            raw = handle.read(SAVED_PLAN_MAX_BYTES + 1)
        if len(raw) > SAVED_PLAN_MAX_BYTES:
            raise UsageError(f"--plan {path}: over {SAVED_PLAN_MAX_BYTES >> 20} MiB, not a saved plan; {hint}")
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:  # json's C scanner recurses per level; a plan nests 6 deep
        raise UsageError(f"--plan {path}: JSON nested too deep to be a saved plan; {hint}") from None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON, an integer of > 4300 digits
        raise UsageError(f"--plan {path}: cannot read the saved plan ({str(exc)[:200]}); {hint}") from exc
    if not isinstance(data, dict) or "observed_fingerprint" not in data or "actions" not in data:
        raise UsageError(f"--plan {path}: not a plan written by plan --format json (no observed_fingerprint/actions)")
    if data.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"--plan {path}: plan format version {str(data.get('format_version'))[:20]!r}, this reconciler "
                         f"applies version {FORMAT_VERSION}; run plan again")
    return data


def check_manifests(saved: dict[str, Any], desired: DesiredState) -> None:
    """Refuse (UsageError, before the host is opened) unless the manifests are the ones
    the saved plan was made from: the desired-state digest names what changed."""
    from reconciler.model.digest import desired_digest
    from reconciler.plan.render_json import digest_from_data

    try:
        then = digest_from_data(saved)
    except ValueError as exc:
        raise UsageError(f"--plan: not a plan written by plan --format json ({exc}); run plan again") from None
    changed = desired_digest(desired).changed(then)
    if changed:
        raise UsageError(f"the manifests changed since the plan was made ({changed}); run plan again")


def check_saved(saved: dict[str, Any], plan: Plan) -> None:
    """Refuse (UsageError) unless `plan` is the saved plan: same host state, same actions."""
    from reconciler.plan.render_json import actions_data

    actions = json.loads(json.dumps(actions_data(plan), sort_keys=True, default=str))
    if saved.get("observed_fingerprint") != plan.fingerprint or saved.get("actions") != actions:
        raise UsageError(STALE)


def _print_report(report: Report, colour: bool) -> None:
    """The root causes (failed steps with the host's error), the resources not applied
    with the step behind each, then one count per outcome. The step lines above already
    say what was done: the resources done are only counted."""
    from reconciler.cli.colour import paint

    if report.failures:
        print("\n" + paint("Failed:", "1;31", colour))
        for result in report.failures:
            print(f"  {result.step.id}: {result.error}")
    if report.not_applied:
        print("\nNot applied:")
        for resource in report.not_applied:
            print(f"  {resource.line()}")
    print(("\n" if report.steps else "") + paint(report.summary(), "1;32" if report.ok else "1;31", colour))


class _Stop:
    """SIGINT/SIGTERM during apply: the first one stops new steps from starting (the running
    ones finish and are reported); a second one has its default effect (the apply dies,
    which the intent records make safe: the next plan shows what is left)."""

    def __init__(self) -> None:
        self.event, self.signal = asyncio.Event(), ""
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._got, sig)

    def _got(self, sig: signal.Signals) -> None:
        self.signal = sig.name
        self.event.set()
        self.close()
        print(f"\n{sig.name}: no new step starts; waiting for the running ones (again to stop at once)",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)


async def _apply(spec: HostSpec, desired: DesiredState, settings: ExecuteSettings, saved: dict[str, Any] | None,
                 colour: bool) -> int:
    from reconciler.cli.hosts import open_host
    from reconciler.cli.plan import render
    from reconciler.cli.progress import Progress, live_terminal
    from reconciler.execute import execute
    from reconciler.execute.report import make_report
    from reconciler.observe.host import observe_host
    from reconciler.plan.build import plan_for

    stop = _Stop()
    try:
        async with open_host(spec) as ports:
            plan = plan_for(desired, await observe_host(ports, settings.retry), hook_timeout_s=settings.hook_timeout_s)
            if saved is not None:
                check_saved(saved, plan)
            sys.stdout.write(render(plan, "text", colour=colour))
            if not plan.steps:  # converged, or only restart-only changes left pending
                _print_report(make_report(plan, ()), colour)
                return 1 if stop.signal else 0
            print()
            progress = Progress([step.id for step in plan.steps], live=live_terminal())
            async with progress.shown():
                report = await execute(plan, ports, settings=settings, on_step=progress.step, stop=stop.event)
    finally:
        stop.close()
    _print_report(report, colour)
    if stop.signal:
        undone = [r.step.id for r in report.steps if r.outcome == "skipped" and r.cause is None]
        print(f"Interrupted by {stop.signal}: {len(undone)} steps left undone; run apply again to finish them: "
              f"{', '.join(undone) or 'none'}.")
        return 1
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.hostlock import agent_lock
    from reconciler.cli.hosts import select_host
    from reconciler.cli.plan import load_desired, print_diagnostics
    from reconciler.execute.settings import resolve_settings

    settings = resolve_settings(args.parallelism)  # flag > environment > default, checked before anything runs
    desired = load_desired(args.paths)
    if desired is None:
        return 1
    saved = _saved_plan(args.plan) if args.plan is not None else None
    if saved is not None:
        check_manifests(saved, desired)
    spec = select_host(args.host)
    try:
        with agent_lock(spec):  # one agent per host: a second apply fails here, naming the holder
            return asyncio.run(_apply(spec, desired, settings, saved, wants_colour(args, sys.stdout)))
    except ManifestError as exc:  # a dependency cycle, at the manifest line of a resource in it
        print_diagnostics(exc.diagnostics)
        return 1
