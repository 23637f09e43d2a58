"""Device health: a backend's XenbusState and hotplug status folded into five words.

Pure. Applies the observer rule of thumb of reference 2.8: a device is up when its
backend is Connected (4) and, for devices set up by a hotplug script (those with a
`script` node: phy vbd, vif), `hotplug-status` is `connected`; it has failed when the
script wrote `hotplug-status = error` (or `busy`) or the guest wrote
`/local/domain/<d>/error/device/<kind>/<devid>/error`.
"""

from __future__ import annotations

from reconciler.model.observed import DeviceHealth, HealthState
from reconciler.observe.tree import Tree
from reconciler.xenfmt import XenbusState, describe_state

_BY_STATE: dict[XenbusState, HealthState] = {
    XenbusState.UNKNOWN: "initialising",
    XenbusState.INITIALISING: "initialising",
    XenbusState.INIT_WAIT: "initialising",
    XenbusState.INITIALISED: "initialising",
    XenbusState.CONNECTED: "connected",
    XenbusState.CLOSING: "closing",
    XenbusState.CLOSED: "closed",
    # PCI hot(un)plug in progress: the backend returns to Connected when done (2.7).
    XenbusState.RECONFIGURING: "initialising",
    XenbusState.RECONFIGURED: "initialising",
}


def _failure(tree: Tree, backend: str, domid: int, frontend: str) -> DeviceHealth | None:
    status = tree.get(f"{backend}/hotplug-status")
    if status == "error":
        detail = tree.get(f"{backend}/hotplug-error") or "no hotplug-error given"
        return DeviceHealth("failed", f"hotplug script failed: {detail}")
    if status == "busy":
        return DeviceHealth("failed", "hotplug script: the device is in use by another domain")
    error = tree.get(f"/local/domain/{domid}/error/device/{frontend}/error")
    if error is not None:
        return DeviceHealth("failed", f"guest frontend reported: {error}")
    return None


def device_health(tree: Tree, backend: str, domid: int, frontend: str) -> DeviceHealth:
    """Health of the device whose backend directory is `backend`; `frontend` is
    `<frontend kind>/<devid>` as used under the guest's `error/device/`."""
    failed = _failure(tree, backend, domid, frontend)
    if failed is not None:
        return failed
    raw = tree.need(f"{backend}/state", "the backend's XenbusState")
    try:
        state = XenbusState(int(raw or ""))
    except ValueError:
        if raw is not None:
            tree.problem(f"{backend}/state = {raw!r} is not a XenbusState (0-8)")
        return DeviceHealth("initialising", "backend state unknown")
    word = _BY_STATE[state]
    if word != "connected":
        return DeviceHealth(word, f"backend state {describe_state(state)}")
    status = tree.get(f"{backend}/hotplug-status")
    if tree.get(f"{backend}/script") is not None and status != "connected":
        return DeviceHealth("initialising", f"backend connected, hotplug script not done (hotplug-status {status!r})")
    return DeviceHealth("connected")
