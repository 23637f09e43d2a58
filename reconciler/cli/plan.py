"""`reconciler plan PATH... [--host H | --observed FILE] [--format text|json|markdown|dot|mermaid|svg]
[--out FILE] [--detailed-exitcode] [--color auto|always|never]`: the dry-run plan.

Composes the pipeline (this is the CLI layer): load the manifests (errors print like
`validate`, `FILE:LINE:COL: error: ...` on stderr, exit 1), observe the host (a captured
dump read as `observe --observed` does, or a live/simulated host through
`reconciler.cli.hosts.observe_selected`), diff, plan, render to stdout or atomically to
`--out`. Exit 0; with --detailed-exitcode 0 no changes, 2 changes; 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from reconciler.cli.colour import add_color_option, wants_colour
from reconciler.errors import ManifestError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from reconciler.errors import Diagnostic
    from reconciler.model.observed import ObservedState
    from reconciler.model.state import DesiredState
    from reconciler.plan.build import Plan

FORMATS = ("text", "json", "markdown", "dot", "mermaid", "svg")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="print the dry-run plan: what apply would change, in order",
        description="Compare the manifests with a host (or a captured xenstore-ls dump) and print "
        "the changes, their impact and the ordered steps apply would run.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)")
    source.add_argument("--observed", metavar="FILE", help="a captured xenstore-ls, -f or -fp dump")
    parser.add_argument("--format", choices=FORMATS, default="text", help="how to print the plan: %(choices)s (default: %(default)s)")
    parser.add_argument("--out", metavar="FILE", help="write the plan to FILE (atomically) instead of stdout")
    parser.add_argument("--detailed-exitcode", action="store_true", help="exit 0 when there are no changes, 2 when there are")
    add_color_option(parser)
    parser.set_defaults(run=run)


def _observe(args: argparse.Namespace) -> ObservedState:
    from reconciler.cli.hosts import observe_selected
    from reconciler.cli.observe import observe_dump

    return observe_dump(args.observed) if args.observed is not None else observe_selected(args.host)


def render(plan: Plan, fmt: str, *, colour: bool = False, host: str | None = None) -> str:
    from reconciler.plan import render_graph, render_json, render_text

    if fmt == "markdown":  # `host`: what it was planned against, for the comment's heading
        from reconciler.plan.render_markdown import render_markdown

        return render_markdown(plan, host=host)
    if fmt == "json":
        return render_json.render_json(plan)
    if fmt == "dot":
        return render_graph.render_dot(plan)
    if fmt == "mermaid":
        return render_graph.render_mermaid(plan)
    if fmt == "svg":  # the dot graph drawn by Graphviz, when it is installed
        from reconciler.cli.graphviz import dot_to_svg

        return dot_to_svg(render_graph.render_dot(plan))
    return render_text.render_text(plan, colour=colour)


def planned_against(args: argparse.Namespace) -> str:
    """What the plan was made against, as the markdown heading names it: `FILE (captured
    dump)`, or the host as `--host` spells it (`sim:DIR`, `xen`)."""
    from reconciler.cli.hosts import select_host

    return f"{args.observed} (captured dump)" if args.observed is not None else str(select_host(args.host))


def _colour(args: argparse.Namespace) -> bool:
    """Colour only the text format, as `--color` says (`reconciler.cli.colour`)."""
    return args.format == "text" and wants_colour(args, None if args.out is not None else sys.stdout)


def load_desired(paths: list[str]) -> DesiredState | None:
    """The manifests, their problems printed on stderr as `validate` prints them; None if invalid."""
    from reconciler.loader import load

    loaded = load(paths)
    print_diagnostics(loaded.diagnostics)
    return loaded.state


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        print(diagnostic, file=sys.stderr)


def check_out(path: str) -> None:
    """Refuse an `--out FILE` that cannot be written atomically, before anything is read:
    its directory must exist, and the path must not be a directory or a special file
    (the atomic rename would replace `/dev/null` itself)."""
    from reconciler.errors import UsageError

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {path}: no directory {parent}; make it first, or name a file in an existing directory")
    if os.path.isdir(path):
        raise UsageError(f"--out {path}: is a directory; name the file to write, e.g. {os.path.join(path, 'plan.json')}")
    if os.path.lexists(path) and not os.path.islink(path) and not os.path.isfile(path):
        raise UsageError(f"--out {path}: exists and is not a regular file; leave out --out to print the plan")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {path}: cannot write in {parent}")


def run(args: argparse.Namespace) -> int:
    from reconciler.atomic import write_text_atomic
    from reconciler.execute.settings import resolve_settings
    from reconciler.plan.build import plan_for

    if args.out is not None:
        check_out(args.out)
    if args.format == "svg":  # Graphviz is optional: say so before reading anything
        from reconciler.cli.graphviz import dot_program

        dot_program()
    hook_timeout_s = resolve_settings().hook_timeout_s  # what apply will give each hook (checked first)
    desired = load_desired(args.paths)
    if desired is None:
        return 1
    observed = _observe(args)
    try:
        plan = plan_for(desired, observed, hook_timeout_s=hook_timeout_s)
    except ManifestError as exc:  # a dependency cycle, at the manifest line of a resource in it
        print_diagnostics(exc.diagnostics)
        return 1
    text = render(plan, args.format, colour=_colour(args), host=planned_against(args))
    if args.out is not None:
        try:
            write_text_atomic(args.out, text)
        except OSError as exc:  # what check_out cannot foresee: a full disk, /proc, a read-only mount
            from reconciler.errors import UsageError

            raise UsageError(f"--out {args.out}: cannot write the plan ({exc.strerror or exc})") from None
    else:
        sys.stdout.write(text)
    return 2 if args.detailed_exitcode and plan.differs else 0  # differs: changes, or a crashed VM preserved
