"""Issue 17, canary with automatic rollback: `mcp-registry canary watch` on a real fleet
(harness/fleet.Fleet: the rendered Envoy, authz-service and ratelimit-service) with two
releases of one server behind the rendered 50/50 split.

Two official-SDK catalog servers serve the registered catalog of the fixture server
`val-py-off` (tests/fixtures/issue16): the stable release 1.0.0 and the canary 1.1.0,
the canary started broken (`--fail-tools`: every tool result is an error;
`--refuse-initialize`: initialize answered 400 / -32022) or healthy. The watcher
scrapes the test Envoy's `/stats/prometheus` every second over a 10 s window and acts
by writing the rollout state and rendering in-process. Which release handled a call is
read from the servers' own dispatch logs (every call carries a unique `query`), never
from what the gateway or the watcher says."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from harness import Process, free_port, metric, service_metrics, wait_for_http, wait_until
from harness.catalog_servers import catalog_fleet, manifest_catalog, route_path
from harness.fleet import route_list
from harness.registry import REGISTRY
from harness.rpc import LEGACY, rpc

SERVER = "val-py-off"
STABLE, CANARY = "1.0.0", "1.1.0"
AGENT = "agent-canary-test"
SCOPES = f"mcp.server.{SERVER}:tools.read"
WINDOW = 10
MIN_CALLS = 10


@contextmanager
def canary_fleet(log_dir: Path, canary_flags: tuple[str, ...] = (), promote: str = "manual"):
    """The stable and canary servers and the gateway, the canary at 50 % with a 10 s
    watch window."""
    catalog = manifest_catalog(SERVER)
    specs = {
        "stable": {"kind": "py", "catalog": {**catalog, "version": STABLE}},
        "canary": {"kind": "py", "catalog": {**catalog, "version": CANARY}, "flags": canary_flags},
    }
    with catalog_fleet(log_dir, specs, lambda servers: {SERVER: servers["stable"].port}) as (fleet, servers):
        path = fleet.manifests / f"{SERVER}.yaml"
        manifest = yaml.safe_load(path.read_text())
        manifest["gateway"]["canary"] = {
            "version": CANARY,
            "endpoint": f"http://127.0.0.1:{servers['canary'].port}/mcp",
            "weight": 50,
            "watch": {
                "window": f"{WINDOW}s",
                "min_calls": MIN_CALLS,
                "error_margin": 0.05,
                "negotiation_margin": 0.05,
                "promote": promote,
            },
        }
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        fleet.render()
        assert weights(fleet) == (50, 50)
        yield fleet, servers


def weights(fleet) -> tuple[int, int]:
    """(stable, canary) weights of the server's rendered route."""
    (route,) = [r for r in route_list(fleet.out / "envoy" / "routes.yaml") if r.get("name") == f"mcp-server/{SERVER}"]
    clusters = {c["name"]: c["weight"] for c in route["route"]["weighted_clusters"]["clusters"]}
    return clusters[f"mcp-server/{SERVER}"], clusters[f"mcp-server/{SERVER}/canary"]


def state(fleet) -> dict:
    path = fleet.out / "rollout" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def fleet_flags(fleet) -> list[str]:
    """The render flags the harness renders with (harness/registry.render)."""
    return [
        str(fleet.manifests), "--out", str(fleet.out), "--credentials-dir", str(fleet.rendered.credentials),
        "--allow-loopback-endpoints",
    ]


class Watcher:
    """`mcp-registry canary watch` on the fleet, scraping its Envoy every second."""

    def __init__(self, fleet, log_dir: Path, source: list[str] | None = None, metrics_port: int | None = None):
        self.metrics_port = metrics_port or free_port()
        source = source or ["--envoy-admin", f"http://127.0.0.1:{fleet.envoy.admin_port}"]
        argv = [
            str(REGISTRY), "canary", "watch", *fleet_flags(fleet), *source,
            "--interval", "1s", "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
        ]
        self.process = Process("canary-watch", argv, log_dir)
        self.started = time.monotonic()
        try:
            wait_for_http(self.metrics_port, "/metrics", process=self.process)
        except Exception:
            self.process.stop()
            raise

    def lines(self) -> list[dict]:
        """Its JSON lines on stdout."""
        return [json.loads(line) for line in self.process.log().splitlines() if line.startswith("{")]

    def events(self, event: str) -> list[dict]:
        return [line for line in self.lines() if line.get("event") == event]

    def metrics(self) -> dict:
        return service_metrics(self.metrics_port)

    def stop(self) -> None:
        self.process.stop()


@contextmanager
def watching(fleet, log_dir: Path, **kwargs):
    watcher = Watcher(fleet, log_dir, **kwargs)
    try:
        yield watcher
    finally:
        watcher.stop()


class Caller:
    """tools/call `search` (or initialize) through the gateway, each with a unique id;
    in the background on demand."""

    def __init__(self, fleet, servers):
        self.fleet, self.servers = fleet, servers
        self.count = 0
        self.lock = threading.Lock()
        self.results: list[tuple[float, str, object]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, tag: str):
        with self.lock:
            self.count += 1
            number = self.count
        query = f"{tag}-{number}"
        response = rpc(
            self.fleet.port, route_path(SERVER), "tools/call", {"name": "search", "arguments": {"query": query}},
            number, AGENT, SCOPES,
        )
        return query, response

    def initialize(self):
        """A handshake-era initialize (what the canary started with
        --refuse-initialize refuses)."""
        with self.lock:
            self.count += 1
            number = self.count
        params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "canary-test", "version": "1"}}
        return rpc(self.fleet.port, route_path(SERVER), "initialize", params, number, AGENT, SCOPES, version=LEGACY)

    def served_by(self, query: str) -> str | None:
        found = [name for name, server in self.servers.items() if any(d["arguments"].get("query") == query for d in server.dispatches())]
        assert len(found) <= 1, (query, found)
        return found[0] if found else None

    def start(self, kind: str = "call") -> None:
        def loop():
            while not self._stop.is_set():
                if kind == "call":
                    query, response = self.call("background")
                else:
                    query, response = None, self.initialize()
                self.results.append((time.monotonic(), query, response))
                time.sleep(0.02)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def ok(response) -> bool:
    """A tool result without isError (or an initialize result)."""
    if response.status != 200:
        return False
    body = json.loads(response.body) if response.body.startswith(b"{") else None
    return body is not None and "result" in body and not body["result"].get("isError")


def assert_rolled_back(fleet, watcher: Watcher, signal: str) -> dict:
    """The rollback as the watcher records it: one JSON line, the state file, the
    rendered weights, its metrics. Returns the line."""
    (line,) = watcher.events("rollback")
    assert line["server"] == SERVER and line["canary"] == CANARY and line["stable"] == STABLE, line
    assert line["signal"] == signal, line
    assert line["canary_value"] == 1.0 and line["stable_value"] == 0.0, line
    assert line["margin"] == 0.05 and line["window_s"] == WINDOW and line["weight"] == 0, line
    assert line["canary_count"] >= MIN_CALLS, line
    entry = state(fleet)[SERVER]
    assert entry["canary_version"] == CANARY and entry["state"] == "rolled_back" and entry["weight"] == 0, entry
    assert entry["reason"] == line["reason"] and entry["reason"].startswith(f"{signal} 1.000 > stable 0.000 + margin 0.050"), entry
    assert entry["signal"] == signal and entry["decided_by"] == "watcher", entry
    # The decision is about this deployment of the version: its endpoint is recorded.
    manifest = yaml.safe_load((fleet.manifests / f"{SERVER}.yaml").read_text())
    assert entry["canary_endpoint"] == manifest["gateway"]["canary"]["endpoint"], entry
    assert weights(fleet) == (100, 0)
    samples = watcher.metrics()
    # Every metric the shipped alert rules read from the watcher (test_monitoring.py).
    assert {name for name, _ in samples} >= {
        "mcp_canary_rollbacks_total", "mcp_canary_promotions_total", "mcp_canary_weight",
        "mcp_canary_last_evaluation_timestamp_seconds", "mcp_canary_no_data",
    }
    labels = {"mcp_server": SERVER, "mcp_server_version": CANARY}
    assert metric(samples, "mcp_canary_rollbacks_total", **labels, mcp_signal=signal) == 1
    assert metric(samples, "mcp_canary_promotions_total", **labels) == 0
    assert metric(samples, "mcp_canary_weight", **labels) == 0
    assert metric(samples, "mcp_canary_last_evaluation_timestamp_seconds") > time.time() - 5
    return line


def status(fleet) -> str:
    done = subprocess.run([str(REGISTRY), "canary", "status", *fleet_flags(fleet)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_canary_failing_its_tool_calls_is_rolled_back_within_the_window(tmp_path):
    with canary_fleet(tmp_path, canary_flags=("--fail-tools",)) as (fleet, servers):
        caller = Caller(fleet, servers)
        with watching(fleet, tmp_path) as watcher:
            # Nothing yet: the watcher waits and says why.
            wait_until(lambda: watcher.events("wait"), timeout=10)
            assert watcher.events("wait")[0]["reason"].startswith("insufficient canary traffic: 0 of 10 tool calls"), watcher.lines()
            caller.start()
            started = time.monotonic()
            try:
                wait_until(lambda: watcher.events("rollback"), timeout=WINDOW + 10)
                elapsed = time.monotonic() - started
                rolled_back = time.monotonic()
                # Calls after the rollback, once Envoy has the new weights (~10 ms).
                time.sleep(1.0)
                after = [caller.call("after-rollback") for _ in range(30)]
                time.sleep(2.0)
            finally:
                caller.stop()
            assert elapsed < WINDOW, elapsed
            assert_rolled_back(fleet, watcher, "tool_call_error_ratio")
            # Decided once: later evaluations leave the rolled-back canary alone.
            assert len(watcher.events("rollback")) == 1
            assert metric(watcher.metrics(), "mcp_canary_rollbacks_total", mcp_server=SERVER, mcp_server_version=CANARY, mcp_signal="tool_call_error_ratio") == 1

        # The background caller's calls: the canary failed them (that is what fired),
        # every call the stable release served succeeded, across the re-render too.
        served = [(at, caller.served_by(query), response) for at, query, response in caller.results]
        assert any(name == "canary" for _, name, _ in served)
        assert all(ok(response) for _, name, response in served if name == "stable"), [
            (r.status, r.body[:200]) for _, n, r in served if n == "stable" and not ok(r)
        ][:3]
        # From a second after the rollback, everything lands on stable and succeeds.
        assert all(name == "stable" and ok(response) for at, name, response in served if at > rolled_back + 1.0)
        assert all(ok(response) for _, response in after), [(r.status, r.body[:200]) for _, r in after if not ok(r)][:3]
        assert {caller.served_by(query) for query, _ in after} == {"stable"}
        assert "rolled_back" in status(fleet)

        # A CI render on the unchanged manifests keeps the rollback.
        fleet.render()
        assert weights(fleet) == (100, 0)


def test_a_canary_refusing_negotiation_is_rolled_back_on_the_negotiation_signal(tmp_path):
    with canary_fleet(tmp_path, canary_flags=("--refuse-initialize",)) as (fleet, servers):
        caller = Caller(fleet, servers)
        with watching(fleet, tmp_path) as watcher:
            wait_until(lambda: watcher.events("wait"), timeout=10)
            caller.start(kind="initialize")
            started = time.monotonic()
            try:
                wait_until(lambda: watcher.events("rollback"), timeout=WINDOW + 10)
                elapsed = time.monotonic() - started
                time.sleep(1.0)
                after = [caller.initialize() for _ in range(20)]
            finally:
                caller.stop()
            assert elapsed < WINDOW, elapsed
            line = assert_rolled_back(fleet, watcher, "negotiation_failure_ratio")
            # No tool call reached the canary: the negotiation count is what was judged.
            assert line["canary_calls"] == 0 and line["canary_negotiations"] >= MIN_CALLS, line
        # The refusals came from the canary (400, -32022); the stable release answered
        # every initialize, and after the rollback every initialize succeeds.
        refused = [r for _, _, r in caller.results if r.status == 400]
        assert refused and all(json.loads(r.body)["error"]["code"] == -32022 for r in refused)
        assert all(ok(r) for _, _, r in caller.results if r.status != 400)
        assert all(ok(r) for r in after), [(r.status, r.body[:200]) for r in after if not ok(r)][:3]


def test_a_healthy_canary_is_promoted_after_a_clean_window(tmp_path):
    with canary_fleet(tmp_path, promote="auto") as (fleet, servers):
        caller = Caller(fleet, servers)
        with watching(fleet, tmp_path) as watcher:
            caller.start()
            try:
                wait_until(lambda: watcher.events("promotion"), timeout=WINDOW + 15)
                promoted_after = time.monotonic() - watcher.started
                time.sleep(1.0)
                after = [caller.call("after-promotion") for _ in range(20)]
            finally:
                caller.stop()
            # Not before the watcher saw a whole window.
            assert promoted_after >= WINDOW, promoted_after
            assert not watcher.events("rollback")
            (line,) = watcher.events("promotion")
            assert line["server"] == SERVER and line["canary"] == CANARY and line["weight"] == 100, line
            assert line["canary_calls"] >= MIN_CALLS and line["canary_errors"] == 0, line
            entry = state(fleet)[SERVER]
            assert entry["state"] == "promoted" and entry["weight"] == 100 and entry["canary_version"] == CANARY, entry
            assert weights(fleet) == (0, 100)
            samples = watcher.metrics()
            labels = {"mcp_server": SERVER, "mcp_server_version": CANARY}
            assert metric(samples, "mcp_canary_promotions_total", **labels) == 1
            assert metric(samples, "mcp_canary_weight", **labels) == 100
            assert metric(samples, "mcp_canary_rollbacks_total", **labels, mcp_signal="tool_call_error_ratio") == 0
        # Both releases served before; every call succeeded; now all on the canary.
        served = {caller.served_by(query) for _, query, _ in caller.results}
        assert served == {"stable", "canary"}, served
        assert all(ok(r) for _, _, r in caller.results)
        assert all(ok(r) for _, r in after)
        assert {caller.served_by(query) for query, _ in after} == {"canary"}


PROMETHEUS = Path("/usr/bin/prometheus")
CANARY_RULES = Path(__file__).resolve().parents[2] / "envoy" / "monitoring" / "mcp-canary-alerts.yaml"


class Prometheus:
    """A real Prometheus scraping the test Envoy and the watcher every second, with the
    shipped canary rules and the rendered mcp_server_info rules."""

    def __init__(self, log_dir: Path, envoy_admin: int, watcher_port: int, rule_files: list[Path]):
        self.port = free_port()
        data = log_dir / "prometheus-data"
        config = log_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [
                {"job_name": "envoy", "metrics_path": "/stats/prometheus",
                 "static_configs": [{"targets": [f"127.0.0.1:{envoy_admin}"]}]},
                {"job_name": "canary-watcher", "static_configs": [{"targets": [f"127.0.0.1:{watcher_port}"]}]},
            ],
        }))
        self.process = Process("prometheus", [
            str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ], log_dir)
        try:
            wait_for_http(self.port, "/-/ready", process=self.process, expect=lambda body: "Ready" in body)
        except Exception:
            self.process.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self, state: str = "firing") -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=5) as response:
            alerts = json.load(response)["data"]["alerts"]
        return [a for a in alerts if a["state"] == state]

    def stop(self) -> None:
        self.process.stop()


def test_the_watcher_reads_prometheus_and_the_shipped_alert_fires(tmp_path):
    """The production path: the watcher's instant queries on a real Prometheus that
    scrapes the gateway, and MCPCanaryRolledBack firing on the watcher's metric."""
    if not PROMETHEUS.exists():
        raise FileNotFoundError(f"{PROMETHEUS} missing (Debian package prometheus)")
    with canary_fleet(tmp_path, canary_flags=("--fail-tools",)) as (fleet, servers):
        metrics_port = free_port()
        prometheus = Prometheus(
            tmp_path, fleet.envoy.admin_port, metrics_port,
            [CANARY_RULES, fleet.out / "monitoring" / "mcp-servers.rules.yaml"],
        )
        try:
            caller = Caller(fleet, servers)
            with watching(fleet, tmp_path, source=["--prometheus", prometheus.url], metrics_port=metrics_port) as watcher:
                caller.start()
                started = time.monotonic()
                try:
                    wait_until(lambda: watcher.events("rollback"), timeout=WINDOW + 15)
                    elapsed = time.monotonic() - started
                    time.sleep(1.0)
                    after = [caller.call("after-rollback") for _ in range(20)]
                finally:
                    caller.stop()
                # Prometheus adds its scrape interval to the detection time.
                assert elapsed < WINDOW + 2, elapsed
                assert_rolled_back(fleet, watcher, "tool_call_error_ratio")
                assert all(ok(r) for _, r in after) and {caller.served_by(q) for q, _ in after} == {"stable"}
                # The shipped alert, on the watcher's counter as Prometheus scraped it.
                firing = wait_until(
                    lambda: [a for a in prometheus.alerts() if a["labels"]["alertname"] == "MCPCanaryRolledBack"], timeout=15
                )
                (alert,) = firing
                assert alert["labels"]["mcp_server"] == SERVER and alert["labels"]["mcp_server_version"] == CANARY
                assert alert["labels"]["mcp_signal"] == "tool_call_error_ratio"
                # The watcher is evaluating: not stale.
                assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == "MCPCanaryWatcherStale"]
        finally:
            prometheus.stop()


def registry(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(REGISTRY), "canary", *args], capture_output=True, text=True, timeout=timeout)


def test_manual_decisions_and_a_one_shot_watch(tmp_path):
    """`canary rollback` / `canary promote` decide through the watcher's code (state
    file, then render, one JSON line); `canary watch --once` evaluates once and exits,
    rolling back what fired."""
    with canary_fleet(tmp_path, canary_flags=("--fail-tools",)) as (fleet, servers):
        caller = Caller(fleet, servers)
        assert "watched (window 10s, min_calls 10" in status(fleet)

        # A one-shot run with --envoy-admin: two scrapes an interval apart.
        caller.start()
        try:
            done = registry(
                "watch", *fleet_flags(fleet), "--envoy-admin", f"http://127.0.0.1:{fleet.envoy.admin_port}",
                "--interval", "3s", "--once",
            )
        finally:
            caller.stop()
        assert done.returncode == 0, done.stdout + done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert [line["event"] for line in lines] == ["rollback"], lines
        assert lines[0]["signal"] == "tool_call_error_ratio" and lines[0]["weight"] == 0
        assert weights(fleet) == (100, 0)

        # By hand: promote, then roll back again; each rendered at once.
        done = registry("promote", *fleet_flags(fleet), SERVER, "--reason", "release owner's call")
        assert done.returncode == 0, done.stderr
        (line,) = [json.loads(line) for line in done.stdout.splitlines()]
        assert line == {
            "event": "promotion", "server": SERVER, "canary": CANARY, "stable": STABLE, "signal": "manual",
            "reason": "release owner's call", "weight": 100,
        }
        assert weights(fleet) == (0, 100)
        entry = state(fleet)[SERVER]
        assert entry["state"] == "promoted" and entry["decided_by"] == "manual" and entry["reason"] == "release owner's call"
        time.sleep(0.5)
        assert {caller.served_by(caller.call("promoted")[0]) for _ in range(10)} == {"canary"}
        assert "promoted at" in status(fleet)

        done = registry("rollback", *fleet_flags(fleet), SERVER)
        assert done.returncode == 0, done.stderr
        assert weights(fleet) == (100, 0) and state(fleet)[SERVER]["state"] == "rolled_back"
        time.sleep(0.5)
        assert {caller.served_by(caller.call("rolled-back")[0]) for _ in range(10)} == {"stable"}

        # A server without a canary is refused, and nothing changes.
        done = registry("rollback", *fleet_flags(fleet), "no-such-server")
        assert done.returncode == 1 and 'no server "no-such-server" with a canary' in done.stderr
        assert weights(fleet) == (100, 0)


FIXTURE = Path(__file__).resolve().parents[2] / "registry" / "tests" / "fixtures" / "canary"


def test_render_needs_the_state_file_the_watcher_creates(tmp_path):
    """A render of a canary fleet into a directory without the rollout state (a fresh CI
    checkout) is refused rather than restoring rolled-back canaries; `canary watch`
    creates the file (`{}`) when it starts, and render then proceeds."""
    out = tmp_path / "out"
    render = [str(REGISTRY), "render", str(FIXTURE), "--out", str(out)]
    done = subprocess.run(render, capture_output=True, text=True, timeout=60)
    state_file = out / "rollout" / "state.json"
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"{state_file}: no rollout state file"), done.stderr
    assert "--rollout-state" in done.stderr and not (out / "envoy").exists()
    # The watcher, even one that cannot read any metrics (nothing listens there).
    done = registry(
        "watch", str(FIXTURE), "--out", str(out), "--envoy-admin", f"http://127.0.0.1:{free_port()}",
        "--interval", "100ms", "--once",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert json.loads(state_file.read_text()) == {}
    done = subprocess.run(render, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (out / "envoy" / "routes.yaml").exists()
