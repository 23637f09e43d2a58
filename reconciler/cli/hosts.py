"""Host selection for every verb that needs a host: `--host sim[:DIR] | xen`.

CLI layer (composes drivers). Precedence is resolved here, once: the `--host` flag,
else `$RECONCILER_HOST`, else `xen` when `/proc/xen/capabilities` says this is a
control domain, else the embedded simulated host in `.reconciler/sim` (DESIGN 5).
`open_host` yields the `HostPorts` of the chosen driver; `observe_selected` runs a
whole observation for verbs that only read.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from reconciler.errors import UsageError
from reconciler.model.observed import ObservedState
from reconciler.ports import HostPorts

ENV = "RECONCILER_HOST"
DEFAULT_SIM_DIR = ".reconciler/sim"
CAPABILITIES = Path("/proc/xen/capabilities")
T = TypeVar("T")


@dataclass(frozen=True)
class HostSpec:
    """A parsed host selection; `state_dir` only for `sim`."""

    kind: Literal["sim", "xen"]
    state_dir: Path | None = None

    def __str__(self) -> str:
        return f"sim:{self.state_dir}" if self.kind == "sim" else "xen"


def default_host(capabilities: Path = CAPABILITIES) -> str:
    """`xen` on a Xen control domain (dom0), `sim` anywhere else."""
    try:
        return "xen" if "control_d" in capabilities.read_text(errors="replace") else "sim"
    except OSError:
        return "sim"


def parse_host(text: str, origin: str = "--host") -> HostSpec:
    """`sim`, `sim:DIR` or `xen`; anything else is a one-line UsageError naming `origin`."""
    kind, sep, rest = text.partition(":")
    if kind == "xen" and not sep:
        return HostSpec("xen")
    if kind == "sim":
        if sep and not rest:
            raise UsageError(f"{origin}: {text!r} names no directory; use sim:DIR or plain sim")
        return HostSpec("sim", Path(rest if sep else DEFAULT_SIM_DIR))
    raise UsageError(f"{origin}: unknown host {text!r}; expected sim, sim:DIR or xen")


def select_host(flag: str | None, env: dict[str, str] | None = None) -> HostSpec:
    """Flag > $RECONCILER_HOST > default_host()."""
    environ = os.environ if env is None else env
    if flag is not None:
        return parse_host(flag)
    if environ.get(ENV):
        return parse_host(environ[ENV], f"${ENV}")
    return parse_host(default_host(), "default host")


def describe(spec: HostSpec, *, read_only: bool = False) -> str:
    """`sim:DIR (embedded simulated host)`: the host and how this process reaches it."""
    if spec.kind == "xen":
        return "xen (this machine's Xen toolstack: xenstored, xl)"
    from drivers.sim.settings import HOST_SOCKET
    from drivers.xenstore.server import socket_answers

    assert spec.state_dir is not None
    if socket_answers(spec.state_dir / HOST_SOCKET):
        how = "simulated host served by reconciler sim serve"
    else:
        how = "saved simulated host, read only" if read_only else "embedded simulated host"
    return f"{spec} ({how})"


def announce(spec: HostSpec | str, *, read_only: bool = False) -> None:
    """`host: ...` on stderr, the first line of every verb that reads or touches a host."""
    text = spec if isinstance(spec, str) else describe(spec, read_only=read_only)
    print(f"host: {text}", file=sys.stderr, flush=True)


@asynccontextmanager
async def open_host(spec: HostSpec, *, read_only: bool = False) -> AsyncIterator[HostPorts]:
    """The ports of the selected host, open for the duration of the block; `read_only`
    for verbs that only look (a simulated host is then not run, only read). The host is
    named on stderr first (DESIGN 6), with how it is reached."""
    if spec.kind == "xen":
        announce(spec)
        from drivers.xen import open_xen

        async with open_xen() as ports:
            yield ports
    else:
        from drivers.sim import open_sim

        assert spec.state_dir is not None
        if spec.state_dir.exists() and not spec.state_dir.is_dir():
            raise UsageError(f"--host {spec}: {spec.state_dir} is not a directory; sim:DIR names the simulated host's state directory")
        announce(spec, read_only=read_only)
        async with open_sim(spec.state_dir, read_only=read_only) as ports:
            yield ports


async def _observe(spec: HostSpec) -> ObservedState:
    from reconciler.execute.settings import resolve_settings
    from reconciler.observe.host import observe_host

    retry = resolve_settings().retry  # the retry numbers of apply: flag > environment > default
    async with open_host(spec, read_only=True) as ports:
        return await observe_host(ports, retry)


def observe_selected(host: str | None) -> ObservedState:
    """Observe the host `--host` (or the environment, or the default) selects, each
    read retried on a transient error as apply retries its steps."""
    return run_async(_observe(select_host(host)))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, without a cost that grows with the result on CPython 3.11:
    on exit the runner calls `signal.getsignal(SIGINT)`, which formats the repr of its
    handler, a partial holding the main task, whose repr includes the task's result.
    For a 500-domain ObservedState that was 0.45 s. The main task here returns None."""
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]
