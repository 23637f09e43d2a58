"""`reconciler observe --observed FILE [--format yaml|json]`: print the observed state.

Composes drivers (this is the CLI layer): reads a captured `xenstore-ls` dump with
`drivers.dump.load_dump`, runs the pure observer and prints ObservedState sorted and
stable on stdout. Dump lines it could not read go to stderr as `FILE:LINE: message`;
what the observer found odd is in the output's `problems`. Exit 0, or 1 when the
dump cannot be read or a host is asked for (live and simulated hosts arrive with the
simulated toolstack, issue 4).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from reconciler.errors import UsageError

NO_HOST_YET = (
    "observe --host is not supported yet: the simulated and live hosts arrive with the "
    "simulated toolstack (issue 4); use --observed FILE with a captured xenstore-ls dump"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "observe",
        help="print what a host's xenstore shows, in manifest terms",
        description="Print the observed state (VMs, devices, health) of a captured "
        "xenstore-ls, xenstore-ls -f or xenstore-ls -fp dump.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--host", metavar="H", help="sim[:DIR] or xen (not supported yet)")
    source.add_argument("--observed", metavar="FILE", help="a captured xenstore-ls dump")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
    parser.set_defaults(run=run)


def render(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    text: str = yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text


def run(args: argparse.Namespace) -> int:
    if args.observed is None:
        raise UsageError(NO_HOST_YET)
    from drivers.dump import load_dump  # heavy imports only when the verb runs
    from reconciler.observe import observe_tree, observed_to_data

    dump = load_dump(args.observed)
    for line in dump.problem_lines():
        print(line, file=sys.stderr)
    state = observe_tree(dump.nodes, truncated=frozenset(dump.truncated))
    sys.stdout.write(render(observed_to_data(state), args.format))
    return 0
