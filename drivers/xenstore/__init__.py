"""xenstore: the wire-protocol client and the simulated xenstored (Xen 4.17 semantics).

Client side (the driver behind `reconciler.ports.XenstorePort`): `XenstoreClient`.
Simulated side (part of the embedded simulated host): `Store` (the tree, usable from
Python), `XenstoreServer` (serves a store on a Unix socket), `persist` (save/load).
Shared: `wire` (framing, constants, path rules) and `errors` (typed exceptions).
"""

from drivers.xenstore.calls import ClientTransaction
from drivers.xenstore.client import ClientSettings, XenstoreClient
from drivers.xenstore.nodes import DOM0, Caller
from drivers.xenstore.retry import NO_WAIT, RetrySettings
from drivers.xenstore.server import XenstoreServer
from drivers.xenstore.store import CallbackWatcher, Store
from drivers.xenstore.watch import WatchStream

__all__ = [
    "DOM0",
    "NO_WAIT",
    "CallbackWatcher",
    "Caller",
    "ClientSettings",
    "ClientTransaction",
    "RetrySettings",
    "Store",
    "WatchStream",
    "XenstoreClient",
    "XenstoreServer",
]
