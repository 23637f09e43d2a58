"""Prometheus metrics of the agent, on a registry of its own, served over HTTP.

The watch loop calls `pass_done`, `set_resources`, `drift_detected` and
`set_xenstore_requests` after each pass; `serve(addr)` exposes them at `/metrics` (any
path answers) with prometheus_client's own server, in a daemon thread, and returns the
stopper. Exposition (names as scraped):

    reconciler_passes_total{trigger,outcome}        counter   passes by trigger and outcome
    reconciler_pass_duration_seconds                histogram one pass, load to record (10 ms .. 5 min)
    reconciler_resources{condition}                 gauge     managed resources whose condition is True
    reconciler_drift_detected_total                 counter   drifted resources seen, summed over passes
    reconciler_xenstore_requests_total              counter   requests sent on the host's xenstore port
    reconciler_last_pass_timestamp_seconds          gauge     Unix time the last pass ended
    reconciler_info{version}                        gauge 1   the running version
    process_*                                       the agent's CPU, memory, open files (Linux /proc)

`reconciler_up` is deliberately absent: Prometheus records `up` for every scrape itself.

ADDR forms: `HOST:PORT`, `[IPv6]:PORT`, or `:PORT`, which means 127.0.0.1 (loopback),
NOT every interface: the metrics say what runs on the host, so exposing them takes an
explicit `0.0.0.0:PORT` or `[::]:PORT`. Port 0 picks a free port (see `address`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from reconciler import __version__
from reconciler.errors import UsageError

log = logging.getLogger(__name__)
DEFAULT_ADDR = "127.0.0.1:9150"
TRIGGERS = ("manifest", "xenstore", "resync", "signal", "retry", "git", "start")
OUTCOMES = ("converged", "changed", "failed", "invalid", "refused", "suspended", "interrupted")
CONDITIONS = ("Ready", "Progressing", "Drifted", "Failed", "RestartRequired")
# A no-op pass on a small host takes ~10 ms; a first pass over 1,000 VMs minutes (each
# VM start waits for its guest): roughly x2.5 steps from 10 ms to 5 min.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_ADDR = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\s:\[\]]*)):(?P<port>[0-9]{1,5})")


def parse_addr(addr: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (127.0.0.1) -> (host, port); UsageError otherwise."""
    match = _ADDR.fullmatch(addr)
    port = int(match.group("port")) if match else -1
    if not match or not 0 <= port <= 65535:
        raise UsageError(f"--metrics {addr[:80]!r}: expected HOST:PORT, [IPv6]:PORT or :PORT (127.0.0.1) with a port "
                         f"0-65535, e.g. {DEFAULT_ADDR} or [::1]:9150")
    return match.group("v6") or match.group("host") or "127.0.0.1", port


class _RunningTotal(Collector):
    """A counter whose value is a running total kept elsewhere (the xenstore port counts
    its requests): exposed as a true counter (`# TYPE ... counter`, `_total`), which a
    Gauge set to the total would not be, and never decreasing, as counters must not."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation, self.value = name, documentation, 0.0

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)


class Metrics:
    """The agent's metrics; each instance has its own registry (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.address: tuple[str, int] | None = None  # where `serve` listens (the real port for :0)
        reg = self.registry
        self._passes = Counter("reconciler_passes", "Passes of the agent by trigger and outcome.",
                               ("trigger", "outcome"), registry=reg)
        for trigger in TRIGGERS:  # every known series from the start, so rate() sees the first pass
            for outcome in OUTCOMES:
                self._passes.labels(trigger, outcome)
        self._duration = Histogram("reconciler_pass_duration_seconds", "Duration of one pass, load to record.",
                                   buckets=DURATION_BUCKETS, registry=reg)
        self._resources = Gauge("reconciler_resources", "Managed resources whose condition is True.",
                                ("condition",), registry=reg)
        for condition in CONDITIONS:
            self._resources.labels(condition).set(0)
        self._drift = Counter("reconciler_drift_detected", "Drifted resources seen, summed over passes.",
                              registry=reg)
        self._xenstore = _RunningTotal("reconciler_xenstore_requests", "Requests sent on the host's xenstore port.")
        reg.register(self._xenstore)
        self._last = Gauge("reconciler_last_pass_timestamp_seconds", "Unix time the last pass ended.", registry=reg)
        Info("reconciler", "The running reconciler.", registry=reg).info({"version": __version__})
        ProcessCollector(registry=reg)

    def pass_done(self, trigger: str, outcome: str, seconds: float) -> None:
        self._passes.labels(trigger, outcome).inc()
        self._duration.observe(seconds)
        self._last.set_to_current_time()

    def set_resources(self, by_condition: Mapping[str, int]) -> None:
        """Resources per condition now; a condition not named (any more) is 0."""
        for condition in {*CONDITIONS, *by_condition}:
            self._resources.labels(condition).set(by_condition.get(condition, 0))

    def drift_detected(self, count: int = 1) -> None:
        if count > 0:
            self._drift.inc(count)

    def set_xenstore_requests(self, total: int) -> None:
        """The running total of requests; a lower one (a new port) is ignored, as counters never go down."""
        self._xenstore.value = max(self._xenstore.value, float(total))

    def serve(self, addr: str) -> Callable[[], None]:
        """Serve `/metrics` on `addr` from a daemon thread; returns the stopper (idempotent)."""
        host, port = parse_addr(addr)
        try:
            server, thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:  # in use, no such address, not allowed
            raise UsageError(f"--metrics {addr}: cannot listen there ({exc.strerror or exc}); "
                             f"choose another HOST:PORT") from None
        bound = server.server_address
        self.address = str(bound[0]), int(bound[1])
        shown = f"[{self.address[0]}]" if ":" in self.address[0] else self.address[0]
        log.info("metrics on http://%s:%d/metrics", shown, self.address[1])
        lock = threading.Lock()
        stopped = False

        def stop() -> None:
            nonlocal stopped
            with lock:
                if stopped:
                    return
                stopped = True
            server.shutdown()
            server.server_close()
            thread.join()

        return stop


__all__ = ["CONDITIONS", "DEFAULT_ADDR", "Metrics", "OUTCOMES", "TRIGGERS", "parse_addr"]
