"""Reading what the gateway reports: audit records and Envoy's Prometheus stats."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def json_lines(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file (what the test upstreams and servers
    record); none while the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def audit_records(path: Path, count: int = 0, timeout: float = 15.0, until=None) -> list[dict]:
    """The audit records in `path` once there are at least `count` of them and
    `until(records)` holds (Envoy writes its access log file periodically); returns
    whatever is there at timeout."""
    deadline = time.monotonic() + timeout
    records: list[dict] = []
    while True:
        records = json_lines(path)
        done = len(records) >= count and (until is None or until(records))
        if done or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def envoy_counter(admin_port: int, name: str) -> int:
    """One Envoy counter by its stat name (admin /stats, not the Prometheus form)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=^{name}$", timeout=5) as response:
        for line in response.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return 0


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """A Prometheus text exposition as {(sample name, labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def prometheus(admin_port: int) -> dict[tuple[str, frozenset], float]:
    """Envoy's /stats/prometheus as {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats/prometheus", timeout=10) as response:
        return parse_prometheus(response.read().decode())


def service_metrics(http_port: int) -> dict[tuple[str, frozenset], float]:
    """A service's /metrics (authz-service, ratelimit-service) as {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        return parse_prometheus(response.read().decode())


def prometheus_when(admin_port: int, ready, timeout: float = 12.0) -> dict[tuple[str, frozenset], float]:
    """Scrapes until `ready(samples)` holds (Envoy merges histograms into the admin
    output at each stats flush, every 5 s by default); the last scrape at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        samples = prometheus(admin_port)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


def metric(samples: dict, name: str, **labels) -> float:
    """The sum of the samples called `name` whose labels include `labels` (PromQL's
    `sum(name{labels})`): a query need not name every label (`mcp_server_version`
    splits a server's series by release); 0 when none exists (a counter never
    incremented)."""
    wanted = set(labels.items())
    return sum((value for (sample, found), value in samples.items() if sample == name and wanted <= found), 0.0)


def series(samples: dict, name: str) -> list[dict]:
    """The label sets of every sample called `name`."""
    return [dict(labels) for (sample, labels) in samples if sample == name]


def wait_until(condition, timeout: float = 15.0, interval: float = 0.1):
    """Polls `condition()` until it returns something true and returns that; raises
    TimeoutError with the last value otherwise. For waiting on a positive signal (a
    counter, a log line) rather than sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)
