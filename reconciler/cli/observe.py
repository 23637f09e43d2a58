"""`reconciler observe [--host H | --observed FILE] [--format yaml|json]`: print the observed state.

Composes drivers (this is the CLI layer): observes the selected host (`--host`,
`$RECONCILER_HOST` or the default, see `reconciler.cli.hosts`) or reads a captured
`xenstore-ls` dump with `drivers.dump.load_dump`, and prints ObservedState sorted and
stable on stdout. Dump lines it could not read go to stderr as `FILE:LINE: message`;
what the observer found odd is in the output's `problems`. Exit 0, or 1 when the host
or the dump cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from reconciler.model.observed import ObservedState



def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "observe",
        help="print what a host's xenstore shows, in manifest terms",
        description="Print the observed state (VMs, devices, health, PCI, firewall, rpc-proxy policy) of a "
        "host, or of a captured xenstore-ls, xenstore-ls -f or xenstore-ls -fp dump.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else xen on dom0, else sim)")
    source.add_argument("--observed", metavar="FILE", help="a captured xenstore-ls dump")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml",
                        help="print the observed state as YAML (default) or JSON")
    parser.set_defaults(run=run)


def render(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    text: str = yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text


def observe_dump(file: str) -> ObservedState:
    """Observe a captured dump; lines the importer could not read go to stderr."""
    from drivers.dump import load_dump  # heavy imports only when the verb runs
    from reconciler.cli.hosts import announce
    from reconciler.observe import observe_tree

    dump = load_dump(file)
    announce(f"{file} (captured xenstore dump)")
    for line in dump.problem_lines():
        print(line, file=sys.stderr)
    return observe_tree(dump.nodes, truncated=frozenset(dump.truncated))


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.hosts import observe_selected
    from reconciler.observe import observed_to_data

    state = observe_dump(args.observed) if args.observed else observe_selected(args.host)
    sys.stdout.write(render(observed_to_data(state), args.format))
    return 0
