"""Settings of the simulated host: file names in the state directory and its timings.

Stage: simulated host (configuration). Pure values. `HostSettings` is built once by
`open_sim` / `sim serve` (explicit argument > env `RECONCILER_SIM_DELAY_SCALE` >
`delay_scale` in DIR/faults.yaml > default, resolved in `resolve_delay_scale`) and
read by the host, its toolstack and its backends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from reconciler.errors import UsageError

XENSTORE_SOCKET = "xenstored.sock"
HOST_SOCKET = "host.sock"
HOST_STATE = "host.json"
LOCK_FILE = "host.lock"
PCI_FILE = "pci.yaml"
FAULTS_FILE = "faults.yaml"
DELAY_SCALE_ENV = "RECONCILER_SIM_DELAY_SCALE"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL


@dataclass(frozen=True)
class HostSettings:
    """Timings of the simulated host. Every `*_ms`/`*_s` below is multiplied by
    `delay_scale`, so tests run the same choreography a hundred times faster."""

    delay_scale: float = 1.0  # 1.0 = roughly real backend timings; tests use ~0.02
    attach_timeout_s: float = 10.0  # LIBXL_INIT_TIMEOUT: libxl waits 10 s for a backend
    destroy_timeout_s: float = 10.0  # LIBXL_DESTROY_TIMEOUT: wait for backend state 6
    guest_ack_ms: int = 50  # a PV guest notices control/shutdown and acknowledges it
    guest_poweroff_ms: int = 150  # the guest's own shutdown, from ack to the domain stopping
    guest_boot_ms: int = 500  # from unpause until the guest's services write its bootSentinel
    crash_after_ms: int = 100  # a crash fault fires this long after unpause (faults.yaml may override)
    settle_s: float = 2.0  # on exit, how long pending backend steps may still run (not scaled)
    rpc_timeout_s: float = 120.0  # client side: longest wait for one host reply (not scaled)

    def scaled(self, seconds: float) -> float:
        return seconds * self.delay_scale

    def ms(self, millis: int | float) -> float:
        """Milliseconds of simulated time -> seconds to sleep."""
        return millis * self.delay_scale / 1000.0

    def with_scale(self, scale: float) -> HostSettings:
        return replace(self, delay_scale=scale)


def resolve_delay_scale(explicit: float | None, from_file: float | None) -> float:
    """The delay scale: explicit argument, else the env variable, else faults.yaml, else 1."""
    if explicit is not None:
        return _check_scale(explicit, "the delay_scale argument")
    env = os.environ.get(DELAY_SCALE_ENV)
    if env is not None and env.strip():
        try:
            return _check_scale(float(env), DELAY_SCALE_ENV)
        except ValueError:
            raise UsageError(f"{DELAY_SCALE_ENV}={env!r} is not a number; set it like 0.05") from None
    return 1.0 if from_file is None else _check_scale(from_file, FAULTS_FILE)


def _check_scale(value: float, where: str) -> float:
    if not 0.0 < value <= 100.0:
        raise UsageError(f"{where}: delay scale {value} is out of range; use a number in (0, 100], e.g. 0.05")
    return value
