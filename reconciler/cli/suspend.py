"""`reconciler suspend [--host H] [--reason TEXT]` and `reconciler resume [--host H]`.

Pause every action of the agent on a host while observing goes on, and lift the pause.
The suspension is recorded on the host itself (`reconciler.agent.suspend`: a dom0-only
xenstore node), so it holds across agent restarts and for every agent. Neither verb
takes the agent lock: they are meant to be run while an agent holds it. Each names the
host on stderr, then prints one line saying what it did; exit 0, 1 on any error.
`resume` on a host that is not suspended says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

HOST_HELP = "sim[:DIR] or xen (default: $RECONCILER_HOST, else detected)"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "suspend",
        help="pause the agent's actions on a host (observing goes on)",
        description="Record on the host that the agent must not act: each pass still observes and plans, "
        "and executes nothing until 'reconciler resume'.",
    )
    parser.add_argument("--host", metavar="H", help=HOST_HELP)
    parser.add_argument("--reason", metavar="TEXT", default="", help="why, for whoever finds the host suspended")
    parser.set_defaults(run=run_suspend)


def register_resume(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "resume",
        help="lift a suspension: the agent acts again from its next pass",
        description="Remove the suspension 'reconciler suspend' recorded on the host.",
    )
    parser.add_argument("--host", metavar="H", help=HOST_HELP)
    parser.set_defaults(run=run_resume)


def run_suspend(args: argparse.Namespace) -> int:
    from reconciler.agent import suspend as record
    from reconciler.cli.hosts import open_host, select_host

    spec = select_host(args.host)

    async def body() -> str:
        async with open_host(spec) as ports:  # not read_only: an embedded sim saves the record
            return await record.suspend(ports.xenstore, args.reason)

    print(f"Host {spec} {asyncio.run(body())}.")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from reconciler.agent import suspend as record
    from reconciler.cli.hosts import open_host, select_host

    spec = select_host(args.host)

    async def body() -> str | None:
        async with open_host(spec) as ports:
            return await record.resume(ports.xenstore)

    lifted = asyncio.run(body())
    if lifted is None:
        print(f"Host {spec} is not suspended: nothing to resume.")
    else:
        was = lifted.removesuffix(f"; {record.LIFT}")
        print(f"Resumed host {spec}: it was {was}; the agent acts from its next pass.")
    return 0
