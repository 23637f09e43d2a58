"""`reconciler reach PATH... [--host H | --observed FILE] [--from VM] [--to VM] [--format text|json]`:
who may talk to whom once the plan is applied.

Composes the pipeline (this is the CLI layer): load the manifests (errors print like
`validate`, on stderr, exit 1), observe the host as `plan` does (the host named on
stderr first; a captured dump works), compute `reconciler.reach.after_apply`, keep the
side `--from`/`--to` name, print text (grouped by source) or JSON (version 1, described
by schemas/reach.schema.json). Changes nothing. Exit 0; 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from reconciler.errors import UsageError

if TYPE_CHECKING:
    from reconciler.model.state import DesiredState
    from reconciler.reach import Reach

FORMATS = ("text", "json")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reach",
        help="print who may talk to whom once the plan is applied (v4v and rpc-proxy)",
        description="Compute, from the manifests and the host (or a captured xenstore-ls dump), the "
        "v4v (domain, port) pairs the firewall allows and the rpc-proxy decision on each DBus call a "
        "VM may make, once the plan is applied, each with the rule that decides it.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)")
    source.add_argument("--observed", metavar="FILE", help="a captured xenstore-ls, -f or -fp dump")
    parser.add_argument("--from", dest="source", metavar="VM", help="only what VM may reach or call")
    parser.add_argument("--to", dest="destination", metavar="VM",
                        help="only what may reach VM (rpc-proxy calls go to dom0's services: --to dom0)")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text grouped by source (default) or JSON (schemas/reach.schema.json)")
    parser.set_defaults(run=run)


def _known(desired: DesiredState, reach: Reach) -> list[str]:
    """The names --from/--to accept: dom0, the desired VMs (running or not) and every
    domain the result names."""
    names = {"dom0", *desired.vms}
    names.update(p.source for p in reach.v4v)
    names.update(p.destination for p in reach.v4v)
    names.update(d.vm for d in reach.rpc)
    names.discard("*")
    return sorted(names)


def _check(option: str, value: str | None, known: list[str]) -> None:
    if value is not None and value not in known:
        raise UsageError(f"{option} {value}: no such VM in the manifests or on the host; valid: {', '.join(known)}")


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.plan import _observe, load_desired
    from reconciler.reach import after_apply, filter_reach, render_text, to_json

    desired = load_desired(args.paths)
    if desired is None:
        return 1
    observed = _observe(args)
    reach = after_apply(desired, observed)
    known = _known(desired, reach)
    _check("--from", args.source, known)
    _check("--to", args.destination, known)
    reach = filter_reach(reach, source=args.source, destination=args.destination)
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(reach), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_text(reach))
    return 0
