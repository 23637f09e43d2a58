"""`reconciler status [--host H] [--format text|json]`: what the agent last did.

CLI layer: reads the status file the agent of the host writes after every pass
(`reconciler.cli.hostlock.status_path`), never the host itself, so it answers at once
even while a pass runs. Text: the agent, the last pass, the desired state, invalid input
and suspension, then one line per resource not Ready (or "all N resources Ready").
JSON: the file as written (`schemas/status.schema.json`). Exit 0, also when no agent
has run on the host; 1 only when the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reconciler.errors import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="what the agent (reconciler watch) last did, per resource",
        description="Print the agent's last pass and, per resource, its conditions (Ready, Progressing, "
        "Drifted, Failed, RestartRequired), from the status file the agent writes after every pass.",
    )
    parser.add_argument("--host", metavar="H", help="sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default) or the status file as JSON (schemas/status.schema.json)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.agent.status import pid_alive, read_status, render_text
    from reconciler.cli.hostlock import status_path
    from reconciler.cli.hosts import select_host

    spec = select_host(args.host)
    path = status_path(spec)
    try:
        document = read_status(path)
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON, not a status document
        raise UsageError(f"{path}: cannot read the agent's status ({str(exc)[:200]}); "
                         "the agent rewrites it after its next pass") from None
    if document is None:
        if args.format == "json":
            print("null")
        else:
            print(f"host: {spec}: no agent has run on this host (no {path})")
        return 0
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    else:
        alive = document["agent"]["state"] != "running" or pid_alive(int(document["agent"]["pid"]))
        sys.stdout.write(render_text(document, alive=alive))
    return 0
