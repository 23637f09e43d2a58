"""Metrics scraped over real HTTP from `Metrics.serve` and parsed with prometheus_client's
own parser: names, types, labels and values as Prometheus sees them."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from reconciler import __version__
from reconciler.agent.metrics import CONDITIONS, Metrics, parse_addr
from reconciler.errors import UsageError
from reconciler.errors import UsageError


@pytest.fixture
def served() -> Iterator[Metrics]:
    metrics = Metrics()
    stop = metrics.serve(":0")
    yield metrics
    stop()


def scrape(metrics: Metrics) -> dict[str, tuple[str, list[Sample]]]:
    """family name -> (type, samples), from a real HTTP GET of /metrics."""
    assert metrics.address is not None
    host, port = metrics.address
    host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    (found,) = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


def test_scraped_over_http_with_every_family_and_type(served: Metrics) -> None:
    assert served.address is not None and served.address[0] == "127.0.0.1"  # ":PORT" is loopback
    served.pass_done("start", "changed", 0.3)
    served.pass_done("manifest", "converged", 0.02)
    served.pass_done("manifest", "converged", 400.0)
    served.set_resources({"Ready": 3, "Drifted": 1})
    served.set_resources({"Ready": 4})
    served.drift_detected(2)
    served.drift_detected()
    served.set_xenstore_requests(120)
    served.set_xenstore_requests(150)
    families = scrape(served)

    kind, samples = families["reconciler_passes"]
    assert kind == "counter"
    assert value(samples, "reconciler_passes_total", trigger="manifest", outcome="converged") == 2
    assert value(samples, "reconciler_passes_total", trigger="start", outcome="changed") == 1
    assert value(samples, "reconciler_passes_total", trigger="resync", outcome="failed") == 0  # there from the start

    kind, samples = families["reconciler_pass_duration_seconds"]
    assert kind == "histogram"
    assert value(samples, "reconciler_pass_duration_seconds_count") == 3
    assert value(samples, "reconciler_pass_duration_seconds_bucket", le="0.025") == 1
    assert value(samples, "reconciler_pass_duration_seconds_bucket", le="300.0") == 2
    assert value(samples, "reconciler_pass_duration_seconds_bucket", le="+Inf") == 3

    kind, samples = families["reconciler_resources"]
    assert kind == "gauge"
    assert {s.labels["condition"]: s.value for s in samples} == {**{c: 0.0 for c in CONDITIONS}, "Ready": 4.0}

    assert families["reconciler_drift_detected"][0] == "counter"
    assert value(families["reconciler_drift_detected"][1], "reconciler_drift_detected_total") == 3
    kind, samples = families["reconciler_xenstore_requests"]
    assert kind == "counter" and value(samples, "reconciler_xenstore_requests_total") == 150

    assert value(families["reconciler_last_pass_timestamp_seconds"][1], "reconciler_last_pass_timestamp_seconds") > 0
    assert families["reconciler_info"][0] == "gauge"  # how the text format carries an Info
    assert value(families["reconciler_info"][1], "reconciler_info", version=__version__) == 1
    assert "process_cpu_seconds" in families


def test_xenstore_counter_never_goes_down(served: Metrics) -> None:
    served.set_xenstore_requests(10)
    served.set_xenstore_requests(3)  # a new port counting from 0: the counter keeps its total
    assert value(scrape(served)["reconciler_xenstore_requests"][1], "reconciler_xenstore_requests_total") == 10


def test_each_instance_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # the same names twice: no "Duplicated timeseries" error
    one.drift_detected(5)
    assert two.registry.get_sample_value("reconciler_drift_detected_total") == 0
    assert one.registry.get_sample_value("reconciler_drift_detected_total") == 5


def test_stopper_closes_the_port() -> None:
    metrics = Metrics()
    stop = metrics.serve("127.0.0.1:0")
    assert metrics.address is not None
    port = metrics.address[1]
    scrape(metrics)
    stop()
    stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_ipv6_loopback() -> None:
    """Served on [::1] where the machine has an IPv6 loopback; where it has none (some CI
    containers), refused in one line instead: either way the test asserts something."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        with pytest.raises(UsageError) as refused:
            Metrics().serve("[::1]:0")
        assert "\n" not in str(refused.value) and "::1" in str(refused.value)
        return
    metrics = Metrics()
    stop = metrics.serve("[::1]:0")
    try:
        assert metrics.address is not None and metrics.address[0] == "::1"
        assert "reconciler_passes" in scrape(metrics)
    finally:
        stop()


@pytest.mark.parametrize(("addr", "expected"), [
    ("127.0.0.1:9150", ("127.0.0.1", 9150)), (":9150", ("127.0.0.1", 9150)), ("[::1]:9150", ("::1", 9150)),
    ("0.0.0.0:9150", ("0.0.0.0", 9150)), ("[::]:80", ("::", 80)), ("localhost:0", ("localhost", 0)),
])
def test_addresses(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["9150", "", "127.0.0.1", "127.0.0.1:", ":70000", "::1:9150", "[::1]9150",
                                  "host:port", "a b:1", "[]:1", "127.0.0.1:9150\n"])
def test_bad_addresses_are_one_line_usage_errors(addr: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_addr(addr)
    message = str(caught.value)
    assert "\n" not in message and "HOST:PORT" in message and "[IPv6]:PORT" in message


def test_port_in_use_is_a_usage_error(served: Metrics) -> None:
    assert served.address is not None
    with pytest.raises(UsageError, match=r"cannot listen there .*; choose another HOST:PORT"):
        Metrics().serve(f"127.0.0.1:{served.address[1]}")
