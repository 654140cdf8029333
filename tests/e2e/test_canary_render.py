"""Issue 17, canary render: two releases of one server behind the split `mcp-registry
render` writes, through the real Envoy, authz-service and ratelimit-service
(harness/fleet.Fleet), and the rollout state file the watcher owns.

Two official-SDK catalog servers serve the same registered catalog of the fixture
server `val-py-off` (tests/fixtures/issue16): the stable release 1.0.0 and the canary
1.1.0, registered in one manifest (`gateway.canary`, weight 50). Which release handled
a call is read from the servers' own dispatch logs (each call carries a unique `query`
argument), never from what the gateway says; the gateway's labels (audit record,
Prometheus series, `x-mcp-server-version`) are then compared with it."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from harness import audit_records, prometheus_when, wait_until
from harness.catalog_servers import catalog_fleet, manifest_catalog, route_path
from harness.envoy import validate
from harness.fleet import route_list
from harness.observe import json_lines
from harness.rpc import rpc

SERVER = "val-py-off"
STABLE, CANARY = "1.0.0", "1.1.0"
AGENT = "agent-canary-test"
SCOPES = f"mcp.server.{SERVER}:tools.read"


@contextmanager
def canary_fleet(log_dir: Path):
    """The stable and canary servers, and the gateway rendered with only the stable one;
    the test adds the canary to the manifest and renders again (live)."""
    catalog = manifest_catalog(SERVER)
    specs = {
        "stable": {"kind": "py", "catalog": {**catalog, "version": STABLE}},
        "canary": {"kind": "py", "catalog": {**catalog, "version": CANARY}},
    }
    with catalog_fleet(log_dir, specs, lambda servers: {SERVER: servers["stable"].port}) as (fleet, servers):
        yield fleet, servers


def set_canary(fleet, port: int | None, version: str = CANARY, weight: int = 50) -> str:
    """Writes the manifest's `gateway.canary` (None: removes it) and renders; returns
    render's stdout (harness.registry.render raises on failure)."""
    path = fleet.manifests / f"{SERVER}.yaml"
    manifest = yaml.safe_load(path.read_text())
    if port is None:
        manifest["gateway"].pop("canary", None)
    else:
        manifest["gateway"]["canary"] = {
            "version": version,
            "endpoint": f"http://127.0.0.1:{port}/mcp",
            "weight": weight,
        }
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return fleet.render()


def weights(fleet) -> list[tuple[str, int]]:
    """(cluster, weight) of the server's rendered route."""
    (route,) = [r for r in route_list(fleet.out / "envoy" / "routes.yaml") if r.get("name") == f"mcp-server/{SERVER}"]
    return [(c["name"], c["weight"]) for c in route["route"]["weighted_clusters"]["clusters"]]


def write_state(fleet, state: dict) -> Path:
    """The rollout state file where render looks by default (as the watcher writes it)."""
    path = fleet.out / "rollout" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.rename(path)
    return path


class Caller:
    """tools/call `search` through the gateway, each with a unique query; which release
    served it is read from the servers' dispatch logs."""

    def __init__(self, fleet, servers):
        self.fleet, self.servers = fleet, servers
        self.count = 0
        self.lock = threading.Lock()

    def call(self, tag: str, forged: bool = True):
        with self.lock:
            self.count += 1
            number = self.count
        query = f"{tag}-{number}"
        headers = [("x-mcp-server-version", "forged"), ("x-mcp-version-pick", "99")] if forged else []
        response = rpc(
            self.fleet.port, route_path(SERVER), "tools/call", {"name": "search", "arguments": {"query": query}},
            number, AGENT, SCOPES, headers=headers,
        )
        return number, query, response

    def served_by(self, query: str) -> str | None:
        found = [name for name, server in self.servers.items() if any(d["arguments"].get("query") == query for d in server.dispatches())]
        assert len(found) <= 1, (query, found)
        return found[0] if found else None


def ok(response) -> bool:
    if response.status != 200:
        return False
    body = json.loads(response.body) if response.body.startswith(b"{") else None
    return body is not None and "result" in body and not body["result"].get("isError")


def test_two_releases_behind_the_rendered_split_and_the_rollout_state(tmp_path):
    with canary_fleet(tmp_path) as (fleet, servers):
        caller = Caller(fleet, servers)
        # Before the canary: one release, everything on stable.
        number, query, response = caller.call("before")
        assert ok(response), (response.status, response.body[:300])
        assert caller.served_by(query) == "stable"

        # The canary at 50 %, live.
        written = set_canary(fleet, servers["canary"].port)
        assert "envoy/routes.yaml" in written and "envoy/clusters.yaml" in written, written
        assert weights(fleet) == [(f"mcp-server/{SERVER}", 50), (f"mcp-server/{SERVER}/canary", 50)]
        wait_until(lambda: caller.served_by(caller.call("warmup")[1]) == "canary", timeout=10)
        posts_from = {name: len(server.posts()) for name, server in servers.items()}

        served: dict[int, str] = {}
        for _ in range(60):
            number, query, response = caller.call("split")
            assert ok(response), (response.status, response.body[:300])
            served[number] = caller.served_by(query)
        counts = {name: list(served.values()).count(name) for name in servers}
        # Both releases get traffic (60 calls at 50/50: each at least 10 but for a
        # chance below 1e-8).
        assert counts["stable"] >= 10 and counts["canary"] >= 10, counts

        # The upstream sees its own version, set by the router for the cluster it used:
        # the client's forged copy never arrives.
        for name, version in (("stable", STABLE), ("canary", CANARY)):
            posts = servers[name].posts()[posts_from[name]:]
            assert posts, name
            assert {p.get("x-mcp-server-version") for p in posts} == {version}, (name, posts[:2])
            assert all("x-mcp-version-pick" not in p for p in posts)

        # Each audit record names the release that actually served the call (the filter
        # reads the served cluster's metadata in on_log).
        records = audit_records(
            fleet.audit_path,
            until=lambda rs: {r.get("jsonrpc_id") for r in rs} >= set(served),
        )
        by_id = {r["jsonrpc_id"]: r for r in records if r.get("method") == "tools/call"}
        for number, name in served.items():
            assert by_id[number]["server_id"] == SERVER
            assert by_id[number]["server_version"] == {"stable": STABLE, "canary": CANARY}[name], by_id[number]

        # Prometheus: a series per release, counting exactly the calls each served.
        def calls(samples, version):
            return sum(
                value
                for (name, labels), value in samples.items()
                if name == "mcp_tool_calls_total"
                and dict(labels).get("mcp_server") == SERVER
                and dict(labels).get("mcp_server_version") == version
            )

        canary_total = len(servers["canary"].dispatches())
        stable_total = len(servers["stable"].dispatches())
        samples = prometheus_when(
            fleet.envoy.admin_port,
            lambda s: calls(s, CANARY) == canary_total and calls(s, STABLE) == stable_total,
        )
        assert calls(samples, CANARY) == canary_total
        assert calls(samples, STABLE) == stable_total

        # Rollback: the watcher's state file at 0 % for exactly this canary version,
        # re-rendered while a background caller keeps calling.
        failures: list = []
        background: list = []
        stop = threading.Event()

        def keep_calling():
            while not stop.is_set():
                _, query, response = caller.call("background", forged=False)
                background.append(query)
                if not ok(response):
                    failures.append((response.status, response.body[:300]))

        thread = threading.Thread(target=keep_calling, daemon=True)
        thread.start()
        try:
            time.sleep(0.5)
            write_state(
                fleet,
                {SERVER: {"canary_version": CANARY, "state": "rolled_back", "weight": 0,
                          "reason": "test: tool_call_error_ratio", "at": "2026-12-02T10:00:00Z"}},
            )
            fleet.render()
            rendered_at = time.monotonic()
            assert weights(fleet) == [(f"mcp-server/{SERVER}", 100), (f"mcp-server/{SERVER}/canary", 0)]
            # Within a second every call is on stable: 30 calls from then on, none on
            # the canary (at 50/50 that would pass by chance once in 1e9).
            time.sleep(max(0.0, rendered_at + 1.0 - time.monotonic()))
            after = [caller.call("after-rollback") for _ in range(30)]
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not failures, failures[:3]
        assert len(background) >= 5, len(background)
        assert all(ok(r) for _, _, r in after)
        # Sent with a forged `x-mcp-version-pick: 99`: stripped, and even a 99 lands on
        # the stable cluster now (the only one with weight).
        assert {caller.served_by(q) for _, q, _ in after} == {"stable"}
        assert all(caller.served_by(q) == "stable" for q in background[-3:])

        # Rendering again on the unchanged manifests keeps 0 %.
        fleet.render()
        assert weights(fleet) == [(f"mcp-server/{SERVER}", 100), (f"mcp-server/{SERVER}/canary", 0)]
        assert {caller.served_by(caller.call("rerender")[1]) for _ in range(15)} == {"stable"}

        # A new canary version in the manifest starts fresh from its own weight.
        set_canary(fleet, servers["canary"].port, version="1.1.1")
        assert weights(fleet) == [(f"mcp-server/{SERVER}", 50), (f"mcp-server/{SERVER}/canary", 50)]
        posts_from = len(servers["canary"].posts())
        wait_until(lambda: caller.served_by(caller.call("fresh")[1]) == "canary", timeout=10)
        assert {p.get("x-mcp-server-version") for p in servers["canary"].posts()[posts_from:]} == {"1.1.1"}


def test_the_rendered_split_loads_in_envoy(tmp_path):
    """The rendered standalone config with a canary (split, per-cluster rewrites and
    headers, release metadata) passes `envoy --mode validate`, at 50 %, rolled back
    (100/0) and promoted (0/100)."""
    with canary_fleet(tmp_path) as (fleet, servers):
        set_canary(fleet, servers["canary"].port)
        for state in (None, ("rolled_back", 0), ("promoted", 100)):
            if state is not None:
                write_state(
                    fleet,
                    {SERVER: {"canary_version": CANARY, "state": state[0], "weight": state[1], "reason": "t", "at": "2026-12-02T10:00:00Z"}},
                )
                fleet.render()
            done = validate(fleet.out / "envoy" / "standalone.yaml")
            assert done.returncode == 0, done.stderr[-2000:]
            canary_weight = weights(fleet)[1][1]
            assert canary_weight == (50 if state is None else state[1])


def assert_sessions_stay_on_their_release(url: str, logs: dict[str, Path]) -> None:
    """Handshake-era SDK sessions through a 50/50 split at `url`, the demo servers'
    header logs in `logs` ("stable", "canary"): every session's requests reach one
    release only, and both releases hold sessions."""
    import anyio

    from e2e.helpers import connect

    async def one_session():
        async with connect(url, mode="legacy") as client:
            await client.list_tools()
            results = [await client.call_tool("get_account_balance", {"account_id": "acc-001"}) for _ in range(3)]
            return [r.is_error for r in results]

    def sessions_on(name):
        posts = [dict(r["headers"]) for r in json_lines(logs[name]) if r["method"] == "POST"]
        return {p["mcp-session-id"] for p in posts if p.get("mcp-session-id")}

    # The canary is live once a session lands on it (and both releases hold sessions
    # before the count below, whatever the random picks).
    wait_until(lambda: anyio.run(one_session) and sessions_on("canary") and sessions_on("stable"), timeout=15)
    for _ in range(12):
        assert anyio.run(one_session) == [False, False, False]
    stable, canary = sessions_on("stable"), sessions_on("canary")
    assert stable and canary, (stable, canary)
    # No session's requests reached both releases.
    assert not stable & canary, stable & canary


def test_handshake_era_sessions_stay_on_the_release_that_issued_them(tmp_path, monkeypatch):
    """Two releases of the demo server (official Python SDK, stateful sessions) behind
    the rendered 50/50 split: every request of a handshake-era session reaches the
    release that answered its `initialize` (the filter pins the session with the route's
    `x-mcp-version-pick`); without the pin about half of the later requests would reach
    the release that does not know the session (404)."""
    import mcp.client.session

    from harness.fleet import Fleet
    from harness.procs import start_mcp_server

    monkeypatch.setattr(mcp.client.session, "LATEST_HANDSHAKE_VERSION", "2025-06-18")
    logs = {name: tmp_path / f"seen-{name}.jsonl" for name in ("stable", "canary")}
    started = []
    try:
        for name in ("stable", "canary"):
            started.append(start_mcp_server(tmp_path, logs[name]))
        (_, stable_port), (_, canary_port) = started
        fleet = Fleet(tmp_path, {"financial-data": stable_port})
        try:
            path = fleet.manifests / "financial-data.yaml"
            manifest = yaml.safe_load(path.read_text())
            manifest["gateway"]["canary"] = {"version": "1.4.0", "endpoint": f"http://127.0.0.1:{canary_port}/mcp", "weight": 50}
            path.write_text(yaml.safe_dump(manifest, sort_keys=False))
            fleet.render()
            assert_sessions_stay_on_their_release(fleet.url("financial-data"), logs)
        finally:
            fleet.stop()
    finally:
        for process, _ in started:
            process.stop()


def test_refused_requests_carry_no_release_whatever_the_client_picks(tmp_path):
    """Security review, finding 2: Envoy picks a route's weighted cluster before any
    filter runs, by the client's own `x-mcp-version-pick`. A request the gateway
    refuses (the filter's own 400, ext_authz's 401) may keep that pick to the end, so
    labelling it with the cluster Envoy holds would let an unauthenticated client put
    negotiation failures under the canary's version (and get a healthy canary rolled
    back). Twenty refused `initialize` requests, each picking the canary (99), add
    nothing to the canary's series; they are counted without `mcp_server_version`, and
    their audit records carry the route's (stable) version."""
    from harness.client import request
    from harness.rpc import MODERN

    with canary_fleet(tmp_path) as (fleet, servers):
        caller = Caller(fleet, servers)
        set_canary(fleet, servers["canary"].port)
        wait_until(lambda: caller.served_by(caller.call("warmup")[1]) == "canary", timeout=10)
        time.sleep(0.5)

        def series(samples, name, version, **labels):
            """The sum of `name` for SERVER with this `mcp_server_version` (None: the
            label absent) and `labels`."""
            total = 0.0
            for (sample, tags), value in samples.items():
                tags = dict(tags)
                if sample != name or tags.get("mcp_server") != SERVER or tags.get("mcp_server_version") != version:
                    continue
                if all(tags.get(k) == v for k, v in labels.items()):
                    total += value
            return total

        watched = ("mcp_requests_total", "mcp_negotiation_failures_total")
        before = prometheus_when(fleet.envoy.admin_port, lambda s: True)
        canary_before = {name: series(before, name, CANARY) for name in watched}

        init_params = {"protocolVersion": MODERN, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        pick = [("x-mcp-version-pick", "99")]
        ids = []
        for n in range(10):
            # No token: ext_authz's 401.
            ids.append(f"no-token-{n}")
            response = rpc(fleet.port, route_path(SERVER), "initialize", init_params, ids[-1], headers=pick)
            assert response.status == 401, (response.status, response.body[:300])
            # An `initialize` whose Mcp-Method header says otherwise: the filter's 400.
            ids.append(f"malformed-{n}")
            body = json.dumps({"jsonrpc": "2.0", "id": ids[-1], "method": "initialize", "params": init_params})
            headers = [
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/list"),
                *pick,
            ]
            response = request(fleet.port, "POST", route_path(SERVER), body, headers)
            assert response.status == 400, (response.status, response.body[:300])

        def counted(samples):
            return (
                series(samples, "mcp_requests_total", None, mcp_method="initialize", mcp_decision="denied") >= 10
                and series(samples, "mcp_requests_total", None, mcp_method="initialize", mcp_decision="invalid") >= 10
            )

        after = prometheus_when(fleet.envoy.admin_port, counted)
        # Never under the canary's version (nor the stable one's)...
        for name in watched:
            assert series(after, name, CANARY) == canary_before[name], (name, canary_before[name], series(after, name, CANARY))
        assert series(after, "mcp_requests_total", STABLE, mcp_method="initialize") == series(
            before, "mcp_requests_total", STABLE, mcp_method="initialize"
        )
        assert series(after, "mcp_negotiation_failures_total", STABLE) == series(before, "mcp_negotiation_failures_total", STABLE)

        # ...but counted (so the checks above are not vacuous), without a version.
        assert series(after, "mcp_requests_total", None, mcp_method="initialize", mcp_decision="denied") - series(
            before, "mcp_requests_total", None, mcp_method="initialize", mcp_decision="denied"
        ) == 10
        assert series(after, "mcp_requests_total", None, mcp_method="initialize", mcp_decision="invalid") - series(
            before, "mcp_requests_total", None, mcp_method="initialize", mcp_decision="invalid"
        ) == 10
        assert series(after, "mcp_negotiation_failures_total", None, mcp_kind="initialize") - series(
            before, "mcp_negotiation_failures_total", None, mcp_kind="initialize"
        ) == 10

        # The audit records name the route's version, the stable one.
        records = audit_records(fleet.audit_path, until=lambda rs: {r.get("jsonrpc_id") for r in rs} >= set(ids))
        by_id = {r["jsonrpc_id"]: r for r in records if r.get("jsonrpc_id") in ids}
        assert set(by_id) == set(ids), sorted(set(ids) - set(by_id))
        for record in by_id.values():
            assert record["decision"] in ("denied", "invalid"), record
            assert record["server_id"] == SERVER, record
            assert record["server_version"] == STABLE, record
