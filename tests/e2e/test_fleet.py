"""A fleet behind one gateway, rendered from manifests (issue 15): the example fleet's
manifests, `mcp-registry render`, and the real Envoy, authz-service and
ratelimit-service on the rendered files. Here each server's endpoint is a header-echo
upstream, so the test sees exactly what each server would get; test_fleet_sdk.py runs
the same fleet with the official SDK servers and clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest
import yaml

from e2e.helpers import AGENT, modern_call
from harness import ROOT, audit_records, bearer, connection_manager, request, start_echo, validate, wait_until, wasm_path
from harness.envoy import wasm_plugin_configs
from harness.fleet import Fleet, render_examples, route_list, route_map

SERVERS = ("financial-data", "hr-directory", "weather")
FLEET_BOOTSTRAP = ROOT / "envoy" / "fleet.yaml"
# One tool of each server, with arguments its schema accepts.
CALLS = {
    "financial-data": ("get_account_balance", {"account_id": "acc-001"}),
    "hr-directory": ("find_employee", {"query": "Ada"}),
    "weather": ("get_forecast", {"city": "Oslo"}),
}
# registry/examples: a credential file for financial-data, a Kubernetes secret
# (here a file where the deployment would mount it) for hr-directory, none for weather.
CREDENTIALS = {
    "financial-data": ["Bearer demo-upstream-token-not-a-secret"],
    "hr-directory": ["Bearer upstream-credential-of-hr-directory"],
    "weather": [],
}
VERSIONS = {"financial-data": "1.3.2", "hr-directory": "0.4.0", "weather": "2.0.1"}


def scopes(*servers: str) -> str:
    return " ".join(f"mcp.server.{s}:tools.read" for s in servers)


def call(port: int, server: str, tool: str, arguments: dict, request_id, agent_scopes: str):
    body, headers = modern_call(tool, request_id, arguments, auth=False)
    headers.append(bearer(AGENT, agent_scopes))
    return request(port, "POST", f"/{server}/mcp", body, headers)


def echoed(response) -> dict:
    assert response.status == 200, (response.status, response.body[:300])
    return json.loads(response.body)


def header(echo: dict, name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fleet")
    echoes = {server: start_echo(logs, name=server) for server in SERVERS}
    running = Fleet(logs, {server: port for server, (_, port) in echoes.items()})
    yield running
    running.stop()
    for process, _ in echoes.values():
        process.stop()


def test_each_server_gets_its_own_labels_path_and_credential(fleet):
    everything = scopes(*SERVERS)
    for n, server in enumerate(SERVERS):
        tool, arguments = CALLS[server]
        echo = echoed(call(fleet.port, server, tool, arguments, f"{server}-{n}", everything))
        # The server's own upstream (the echo names itself), at the endpoint's path.
        assert echo["upstream"] == server
        assert echo["path"] == "/mcp"
        assert header(echo, "x-mcp-server-id") == [server]
        assert header(echo, "x-mcp-tool-name") == [tool]
        assert len(header(echo, "x-agent-id")) == 1
        # Each server's registered credential, never the client's token.
        assert header(echo, "authorization") == CREDENTIALS[server]
    records = audit_records(fleet.audit_path, len(SERVERS))
    by_server = {r["server_id"]: r for r in records}
    assert set(by_server) == set(SERVERS)
    for server in SERVERS:
        record = by_server[server]
        assert record["server_version"] == VERSIONS[server]
        assert record["tool_name"] == CALLS[server][0]
        assert record["decision"] == "allowed"


def test_a_tool_of_one_server_through_another_servers_route_is_refused(fleet):
    # get_forecast is weather's; through financial-data's route the policy of
    # financial-data decides, and it does not know the tool.
    response = call(fleet.port, "financial-data", "get_forecast", {"city": "Oslo"}, "x-1", scopes(*SERVERS))
    assert response.status == 403
    assert response.json()["error"]["code"] == -31011
    # And a token scoped to one server does not reach another.
    response = call(fleet.port, "hr-directory", "find_employee", {"query": "Ada"}, "x-2", scopes("weather"))
    assert response.status == 403


def test_an_unregistered_path_is_404_with_an_audit_record(fleet):
    body, headers = modern_call("get_account_balance", "nobody-1", {"account_id": "acc-001"})
    paths = ("/payments/mcp", "/mcp", "/financial-data/mcp/", "/FINANCIAL-DATA/mcp")
    for path in paths:
        response = request(fleet.port, "POST", path, body, headers)
        assert response.status == 404, path
        assert response.json()["error"]["code"] == -31014, path
    # Refused at the request head: no body read, so no JSON-RPC id; the only records
    # without a server in this module.
    mine = lambda records: [r for r in records if r["server_id"] is None]  # noqa: E731
    records = mine(audit_records(fleet.audit_path, until=lambda rs: len(mine(rs)) >= len(paths)))
    assert len(records) == len(paths)
    assert all(r["error_code"] == -31014 and r["http_status"] == 404 for r in records), records


def test_registering_and_removing_a_server_under_load_fails_no_other_request(tmp_path):
    """Two servers under a bounded load while a third is registered (render: policy,
    limits, clusters, routes, all picked up live) and removed again: every request to
    the two is answered 200, and the third serves while it is registered."""
    started = {server: start_echo(tmp_path, name=server) for server in SERVERS}
    ports = {server: port for server, (_, port) in started.items()}
    # Loaded: financial-data (default limit 600 per agent and tool a minute: the load
    # stays under it) and weather (no limit on get_forecast); hr-directory comes and goes.
    running = Fleet(tmp_path, {s: ports[s] for s in ("financial-data", "weather")})
    everything = scopes(*SERVERS)
    # (when it ended, status) of every load request.
    statuses: dict[str, list[tuple[float, int]]] = {"financial-data": [], "weather": []}
    stop = threading.Event()

    def load(server: str) -> None:
        tool, arguments = CALLS[server]
        n = 0
        while not stop.is_set() and n < 550:
            n += 1
            status = call(running.port, server, tool, arguments, f"load-{n}", everything).status
            statuses[server].append((time.monotonic(), status))

    def added_status() -> int:
        tool, arguments = CALLS["hr-directory"]
        return call(running.port, "hr-directory", tool, arguments, "added", everything).status

    workers = [threading.Thread(target=load, args=(server,)) for server in statuses]
    try:
        for worker in workers:
            worker.start()
        assert added_status() == 404
        wait_until(lambda: all(len(seen) >= 20 for seen in statuses.values()))
        changing = time.monotonic()
        wrote = running.register("hr-directory", ports["hr-directory"])
        assert "envoy/routes.yaml" in wrote and "policy.yaml" in wrote, wrote
        # Serving once Envoy and the authz-service have both reloaded (a moment).
        wait_until(lambda: added_status() == 200, timeout=15)
        served = [added_status() for _ in range(20)]
        assert served == [200] * 20
        running.unregister("hr-directory")
        wait_until(lambda: added_status() == 404, timeout=15)
        changed = time.monotonic()
        counts = {server: len(seen) for server, seen in statuses.items()}
        wait_until(lambda: all(len(seen) >= counts[server] + 20 for server, seen in statuses.items()))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        running.stop()
        for process, _ in started.values():
            process.stop()
    for server, seen in statuses.items():
        during = [status for at, status in seen if changing <= at <= changed]
        # The load really ran while the fleet changed, and not one request failed.
        assert len(during) >= 10, (server, len(during))
        assert {status for _, status in seen} == {200}, (server, sorted({s for _, s in seen}))


def test_what_render_writes_passes_each_consumers_own_validation(tmp_path):
    """The rendered example fleet: Envoy's bootstrap with its routes and clusters pass
    `envoy --mode validate` (the routes and clusters inlined, since validation does not
    read file-based xDS), and the policy and limits pass each service's --validate."""
    out, credentials = render_examples(tmp_path)

    # The bootstrap is the shipped envoy/fleet.yaml, pointed at the rendered directory.
    shipped = FLEET_BOOTSTRAP.read_text().replace("/etc/mcp-gateway/envoy", str((out / "envoy").resolve()))
    assert (out / "envoy" / "bootstrap.yaml").read_text() == shipped
    assert validate(out / "envoy" / "bootstrap.yaml").returncode == 0
    bootstrap = yaml.safe_load((out / "envoy" / "bootstrap.yaml").read_text())
    routes = yaml.safe_load((out / "envoy" / "routes.yaml").read_text())["resources"]
    clusters = yaml.safe_load((out / "envoy" / "clusters.yaml").read_text())["resources"]
    assert [c["name"] for c in clusters] == [f"mcp-server/{s}" for s in SERVERS]
    del bootstrap["dynamic_resources"]
    hcm = connection_manager(bootstrap)
    del hcm["rds"]
    hcm["route_config"] = {k: v for k, v in routes[0].items() if k != "@type"}
    bootstrap["static_resources"]["clusters"] += [{k: v for k, v in c.items() if k != "@type"} for c in clusters]
    for plugin in wasm_plugin_configs(bootstrap):
        plugin["vm_config"]["code"]["local"]["filename"] = str(wasm_path())
    inlined = tmp_path / "inlined.yaml"
    inlined.write_text(yaml.safe_dump(bootstrap))
    result = validate(inlined)
    assert result.returncode == 0, result.stdout + result.stderr

    for binary, file in (("mcp-authz-service", out / "policy.yaml"), ("mcp-ratelimit-service", out / "limits" / "limits.yaml")):
        done = subprocess.run([str(ROOT / "target" / "release" / binary), "--validate", str(file)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (binary, done.stdout + done.stderr)
        assert done.stdout == f"{file}: OK\n"


def test_manifest_labels_join_the_gateways_series_in_prometheus(tmp_path):
    """metric_labels cannot be labels of the filter's series (proxy-wasm metrics have
    none; Envoy's tag rules are fixed): render writes one mcp_server_info series per
    server instead, by recording rule. promtool loads the rendered rules and checks the
    join a dashboard would make: calls per team."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed; run scripts/setup.sh"
    out, _ = render_examples(tmp_path)
    rules = out / "monitoring" / "mcp-servers.rules.yaml"
    tests = tmp_path / "join.test.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {"series": 'mcp_tool_calls_total{mcp_server="financial-data",mcp_tool="get_account_balance",mcp_outcome="success"}', "values": "0+60x10"},
                            {"series": 'mcp_tool_calls_total{mcp_server="hr-directory",mcp_tool="find_employee",mcp_outcome="success"}', "values": "0+120x10"},
                            {"series": 'mcp_tool_calls_total{mcp_server="weather",mcp_tool="get_forecast",mcp_outcome="success"}', "values": "0+30x10"},
                        ],
                        "promql_expr_test": [
                            {
                                # mcp_track="stable": a server with a canary has one info series per release.
                                "expr": 'sum by (team) (rate(mcp_tool_calls_total[5m]) * on (mcp_server) group_left (team) mcp_server_info{mcp_track="stable"})',
                                "eval_time": "10m",
                                # weather has no team label: its calls sum under team="".
                                "exp_samples": [
                                    {"labels": '{team="payments"}', "value": 1},
                                    {"labels": '{team="people"}', "value": 2},
                                    {"labels": "{}", "value": 0.5},
                                ],
                            },
                            {
                                "expr": 'mcp_server_info{mcp_server="weather"}',
                                "eval_time": "1m",
                                "exp_samples": [
                                    {
                                        "labels": 'mcp_server_info{mcp_server="weather",mcp_server_version="2.0.1",mcp_track="stable",mcp_owner="weather-team@company.com"}',
                                        "value": 1,
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout, checked.stdout
    tested = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_path_map_is_only_a_shortcut_to_the_route_list(tmp_path):
    """The virtual host finds a server's route by a hash map on the exact path (the
    cost per request does not grow with the fleet); every other request (a query
    string, the metadata route, an unregistered path) falls back to the route list. The
    map must send each path to exactly the route the list would pick."""
    out, _ = render_examples(tmp_path)
    routes = route_list(out / "envoy" / "routes.yaml")
    by_map = route_map(out / "envoy" / "routes.yaml")
    assert [r["name"] for r in routes] == ["mcp-oauth-metadata", *(f"mcp-server/{s}" for s in SERVERS), "mcp-unregistered"]
    assert set(by_map) == {"/financial-data/mcp", "/hr-directory/mcp", "/weather/mcp"}
    for path, route in by_map.items():
        # The route the list picks for this exact path: the first that matches it.
        picked = next(r for r in routes if r["match"].get("path") == path or path.startswith(r["match"].get("prefix", "\0")))
        assert route == picked, path


def test_values_yaml_11_reads_as_booleans_stay_strings(tmp_path):
    """A server id `on`, a tool `yes` and a version `y` are legal, and YAML 1.1 readers
    (Envoy's yaml-cpp, kubectl, PyYAML) read them unquoted as booleans: route metadata
    would change type and the rate limit descriptor_value would make Envoy refuse the
    routes. Render quotes them; the request is labelled, limited and audited as `on`."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "registry" / "examples" / "schemas", source / "schemas")
    manifest = yaml.safe_load((ROOT / "registry" / "examples" / "weather.yaml").read_text())
    manifest.update(server_id="on", version="y")
    manifest["tools"] = [{"name": "yes", "schema_ref": "schemas/get_forecast_v1.json"}]
    manifest["gateway"] = {"path": "/on/mcp", "rate_limits": {"tools": {"yes": {"unit": "hour", "requests_per_unit": 1}}}}
    (source / "on.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    echo, echo_port = start_echo(tmp_path, name="on")
    running = Fleet(tmp_path / "gateway", {"on": echo_port}, source=source)
    try:
        # Every rendered YAML file, read as YAML 1.1 does, keeps them strings.
        route = route_map(running.out / "envoy" / "routes.yaml")["/on/mcp"]
        metadata = route["metadata"]["filter_metadata"]["mcp_gateway"]
        digests = json.loads(metadata.pop("schema_digests"))
        assert metadata == {"server_id": "on", "server_version": "y", "tools": "yes", "unregistered_tools": "hide"}
        assert list(digests) == ["yes"]
        assert route["route"]["rate_limits"][0]["actions"][0]["generic_key"]["descriptor_value"] == "on"
        echo_body = echoed(call(running.port, "on", "yes", {"city": "Oslo"}, "on-1", scopes("on")))
        assert header(echo_body, "x-mcp-server-id") == ["on"] and header(echo_body, "x-mcp-tool-name") == ["yes"]
        (record,) = audit_records(running.audit_path, 1)
        assert (record["server_id"], record["server_version"], record["tool_name"]) == ("on", "y", "yes")
        # The server's limit applies under its own id: the second call in the hour is refused.
        assert call(running.port, "on", "yes", {"city": "Oslo"}, "on-2", scopes("on")).status == 429
    finally:
        running.stop()
        echo.stop()


def test_a_servers_validation_mode_changes_live_with_a_render(fleet):
    """Issue 16 through the fleet's own render: weather's registered get_forecast allows
    1-7 days. In the default mode (report) a call asking for 9 reaches the server; with
    `gateway.validation: enforce` in its manifest and a render (schemas.json, reloaded
    live by the authz-service; Envoy's routes already send it the body) the same call is refused
    with 400 and -32602 and never reaches it, a valid call still does, and the other
    servers keep their default. Back to report, it is forwarded again."""
    everything = scopes(*SERVERS)
    invalid = {"city": "Oslo", "days": 9}
    pid = fleet.envoy.pid
    manifest_file = fleet.manifests / "weather.yaml"
    original = manifest_file.read_text()

    def weather(request_id: str, arguments: dict):
        return call(fleet.port, "weather", "get_forecast", arguments, request_id, everything)

    assert weather("report-1", invalid).status == 200
    manifest = yaml.safe_load(original)
    manifest.setdefault("gateway", {})["validation"] = "enforce"
    manifest_file.write_text(yaml.safe_dump(manifest, sort_keys=False))
    try:
        wrote = fleet.render()
        # Both modes need the body, so Envoy's routes stay as they are: only the
        # authz-service reloads.
        assert "schemas.json" in wrote and "envoy/routes.yaml" not in wrote, wrote
        assert json.loads((fleet.out / "schemas.json").read_text())["servers"]["weather"]["validation"] == "enforce"
        refused = wait_until(lambda: (r := weather("enforce-1", invalid)).status == 400 and r, timeout=15)
        error = json.loads(refused.body)
        assert error["id"] == "enforce-1" and error["error"]["code"] == -32602, error
        assert "/days" in error["error"]["message"], error
        assert echoed(weather("enforce-2", {"city": "Oslo", "days": 2}))["upstream"] == "weather"
        # financial-data is still in report mode: an extra argument its schema forbids
        # is forwarded.
        tool, arguments = CALLS["financial-data"]
        assert call(fleet.port, "financial-data", tool, {**arguments, "extra": 1}, "fd-extra", everything).status == 200
    finally:
        manifest_file.write_text(original)
        fleet.render()
    wait_until(lambda: weather("report-2", invalid).status == 200, timeout=15)
    assert fleet.envoy.pid == pid
