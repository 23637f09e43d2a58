"""`reconciler sim serve [--state DIR]`: run the simulated host in the foreground.

Composes drivers (this is the CLI layer): loads the saved xenstore from DIR (refusing
a corrupt one), serves it on DIR/xenstored.sock for Xen's tools and our client, saves
it atomically every second while it changes and once more on SIGTERM/SIGINT, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the drivers load when the verb runs, not for every `reconciler` call
    from drivers.xenstore.store import Store
from reconciler.errors import UsageError

DEFAULT_STATE = ".reconciler/sim"
SOCKET_NAME = "xenstored.sock"
AUTOSAVE_SECONDS = 1.0  # bounds what a kill -9 loses; saving 60k nodes takes ~0.1 s
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sim", help="run the embedded simulated host")
    sim_sub = parser.add_subparsers(dest="sim_command", metavar="COMMAND", required=True)
    serve = sim_sub.add_parser(
        "serve",
        help="serve the simulated xenstored in the foreground until SIGTERM/SIGINT",
        description="Serve the simulated host's xenstored on DIR/xenstored.sock. "
        "Point Xen's tools at it with XENSTORED_PATH=<printed path>.",
    )
    serve.add_argument("--state", metavar="DIR", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.sim_command == "serve":
        return serve(Path(args.state))
    raise UsageError(f"unknown sim command {args.sim_command!r}")


def serve(state_dir: Path) -> int:
    """Serve until SIGTERM/SIGINT; the store is saved before returning 0."""
    state_dir = state_dir.resolve()
    sock = state_dir / SOCKET_NAME
    if len(str(sock)) > _SUN_PATH_MAX:
        raise UsageError(f"socket path {sock} is longer than {_SUN_PATH_MAX} bytes; use a shorter --state DIR")
    state_dir.mkdir(parents=True, exist_ok=True)
    from drivers.xenstore import persist

    store = persist.load_or_new(state_dir / persist.STATE_FILE)
    asyncio.run(_serve(store, sock, state_dir / persist.STATE_FILE))
    return 0


async def _serve(store: Store, sock: Path, state_file: Path) -> None:
    from drivers.xenstore import persist
    from drivers.xenstore.server import XenstoreServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    saved = store.changes
    try:
        async with XenstoreServer(store, sock):
            print(f"xenstored: listening on {sock}", flush=True)
            print(f"export XENSTORED_PATH={sock}", flush=True)
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), AUTOSAVE_SECONDS)
                except TimeoutError:
                    pass
                if store.changes != saved:
                    saved = store.changes
                    persist.save(store, state_file)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        persist.save(store, state_file)
    print(f"xenstored: saved {len(store)} nodes to {state_file}", file=sys.stderr, flush=True)
