"""The example fleet on Istio, rendered by `mcp-registry render` (istio/): the
Gateway and VirtualService turned into the routes istiod generates on an ingress
gateway, the rendered EnvoyFilter's patches applied to them as istiod applies them
(every patch must match something: tests/harness/istio.py), and the real Envoy run on
the result with the real authz-service and ratelimit-service on the rendered policy
and limits, header-echo upstreams as the servers. Also: every rendered Kubernetes and
Istio document passes the checks the shipped ones do (test_deploy.py, test_istio.py)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from e2e.helpers import AGENT, modern_call
from e2e.test_deploy import K8S_VERSION
from e2e.test_istio import HCM_SETTINGS, check_envoy_filter_fields
from harness import audit_records, bearer, free_port, request, start_echo, validate
from harness.authz import Authz
from harness.envoy import Envoy, audit_log_path, connection_manager, render_config
from harness import fleet as fleet_harness
from harness.fleet import route_list
from harness.istio import (
    UnmatchedPatch,
    apply,
    fleet_gateway_skeleton,
    fleet_upstreams,
    load,
    load_all,
    outbound_cluster,
)
from harness.ratelimit import Ratelimit

SERVERS = ("financial-data", "hr-directory", "weather")
CALLS = {
    "financial-data": ("get_account_balance", {"account_id": "acc-001"}),
    "hr-directory": ("find_employee", {"name": "Ada"}),
    "weather": ("get_forecast", {"city": "Oslo"}),
}
VERSIONS = {"financial-data": "1.3.2", "hr-directory": "0.4.0", "weather": "2.0.1"}
CREDENTIALS = {
    "financial-data": ["Bearer demo-upstream-token-not-a-secret"],
    "hr-directory": ["Bearer upstream-credential-of-hr-directory"],
    "weather": [],
}
# HTTPRoute fields of networking.istio.io/v1 VirtualService (Istio reference).
HTTP_ROUTE_FIELDS = {
    "name", "match", "route", "redirect", "directResponse", "delegate", "rewrite", "timeout",
    "retries", "fault", "mirror", "mirrors", "mirrorPercentage", "corsPolicy", "headers",
}


def scopes(*servers: str) -> str:
    return " ".join(f"mcp.server.{s}:tools.read" for s in servers)


class Rendered(fleet_harness.Rendered):
    """The example fleet's manifests with loopback endpoints, rendered (istio/ too)."""

    def __init__(self, log_dir: Path, endpoints: dict[str, int]):
        super().__init__(log_dir, endpoints)
        self.ports = endpoints
        self.routes_file = self.out / "istio" / "gateway-virtualservice.yaml"
        self.envoy_filter = load(self.out / "istio" / "gateway-envoyfilter.yaml")

    def istio_bootstrap(self, envoy_filter: dict | None = None) -> dict:
        """What the gateway pods run: istiod's routes for the rendered VirtualService
        with the rendered EnvoyFilter applied."""
        return apply(envoy_filter or self.envoy_filter, fleet_gateway_skeleton(self.routes_file))


def routes_by_name(bootstrap: dict) -> dict[str, dict]:
    (vhost,) = connection_manager(bootstrap)["route_config"]["virtual_hosts"]
    return {route["name"]: route for route in vhost["routes"]}


class Gateway:
    def __init__(self, log_dir: Path, bootstrap: dict, authz: Authz, ratelimit: Ratelimit, name: str):
        source = log_dir / f"istio-fleet-{name}.yaml"
        source.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        self.port, admin = free_port(), free_port()
        self.config = render_config(source, log_dir, self.port, admin, fleet_upstreams(bootstrap, {**authz.upstreams(), **ratelimit.upstreams()}, authz.http_port))
        self.audit_path = audit_log_path(log_dir, self.port)
        self.envoy = Envoy(self.config, admin, log_dir, name=f"envoy-{name}")

    def call(self, server: str, tool: str, arguments: dict, request_id, agent_scopes: str):
        body, headers = modern_call(tool, request_id, arguments, auth=False)
        headers.append(bearer(AGENT, agent_scopes))
        return request(self.port, "POST", f"/{server}/mcp", body, headers)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fleet-istio")
    echoes = {server: start_echo(logs, name=server) for server in SERVERS}
    started = []
    try:
        rendered = Rendered(logs, {server: port for server, (_, port) in echoes.items()})
        authz = Authz(logs, policy=rendered.out / "policy.yaml", schemas=rendered.out / "schemas.json", in_place=True)
        started.append(authz)
        ratelimit = Ratelimit(logs, config_dir=rendered.out / "limits")
        started.append(ratelimit)
        rendered.logs, rendered.authz, rendered.ratelimit = logs, authz, ratelimit
        gateway = Gateway(logs, rendered.istio_bootstrap(), authz, ratelimit, "rendered")
        started.append(gateway.envoy)
        rendered.gateway = gateway
        yield rendered
    finally:
        for process in reversed(started):
            process.stop()
        for process, _ in echoes.values():
            process.stop()


def echoed(response) -> dict:
    assert response.status == 200, (response.status, response.body[:300])
    return json.loads(response.body)


def header(echo: dict, name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


def test_render_writes_the_istio_and_kubernetes_files(fleet):
    written = fleet.written.splitlines()
    istio = [line for line in written if "/istio/" in line]
    # The EnvoyFilter before the routes it patches.
    assert [Path(line.split()[-1]).name for line in istio] == ["gateway-envoyfilter.yaml", "gateway-virtualservice.yaml"]
    for name in ("configmaps.yaml", "authz-service.yaml", "envoy-configmap.yaml"):
        assert (fleet.out / "kubernetes" / name).is_file()


def test_the_assembled_gateway_validates(fleet):
    result = validate(fleet.gateway.config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_server_route_carries_what_the_envoy_target_renders(fleet):
    """Istio's routes after the patches, against the plain-Envoy routes render writes
    for the same fleet: same metadata (the filter's labels), rate limit actions,
    timeouts and rewrites, each to its own server's cluster."""
    envoy_by_path = {r["match"].get("path"): r for r in route_list(fleet.out / "envoy" / "routes.yaml")}
    routes = routes_by_name(fleet.istio_bootstrap())
    for server in SERVERS:
        route = routes[f"mcp-server-{server}"]
        expected = envoy_by_path[f"/{server}/mcp"]
        assert route["match"] == {"path": f"/{server}/mcp", "case_sensitive": True}
        assert route["metadata"]["filter_metadata"]["mcp_gateway"] == expected["metadata"]["filter_metadata"]["mcp_gateway"]
        assert route["metadata"]["filter_metadata"]["mcp_gateway"]["server_id"] == server
        for key in ("rate_limits", "timeout", "idle_timeout", "prefix_rewrite", "host_rewrite_literal"):
            assert route["route"].get(key) == expected["route"].get(key), (server, key)
        # The manifest's endpoint as the Kubernetes service (here its loopback port).
        assert route["route"]["cluster"] == f"outbound|{fleet.ports[server]}||127.0.0.1"
    # The catch-all comes last and is marked for the filter; nothing else is.
    (vhost,) = connection_manager(fleet.istio_bootstrap())["route_config"]["virtual_hosts"]
    last = vhost["routes"][-1]
    assert last["name"] == "mcp-unregistered" and last["match"] == {"prefix": "/"}
    assert last["metadata"]["filter_metadata"]["mcp_gateway"] == {"unregistered": "true"}
    marked = [r["name"] for r in vhost["routes"] if "mcp_gateway" in r["metadata"]["filter_metadata"]]
    assert marked == [f"mcp-server-{s}" for s in SERVERS] + ["mcp-unregistered"]
    # Only ext_authz is off on the metadata route; its rate limits and filters as in envoy/.
    assert routes["mcp-oauth-metadata"]["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True


def test_a_patch_for_a_route_the_virtualservice_lacks_is_refused(fleet):
    # The harness refuses what Istio would silently skip: a server's patch without its
    # http route in the VirtualService.
    routes = load_all(fleet.routes_file)
    virtual_service = next(d for d in routes if d["kind"] == "VirtualService")
    virtual_service["spec"]["http"] = [h for h in virtual_service["spec"]["http"] if h["name"] != "mcp-server-weather"]
    trimmed = fleet.logs / "routes-without-weather.yaml"
    trimmed.write_text(yaml.safe_dump_all(routes))
    with pytest.raises(UnmatchedPatch, match="mcp-server-weather"):
        apply(fleet.envoy_filter, fleet_gateway_skeleton(trimmed))


def test_each_server_gets_its_own_labels_path_and_credential(fleet):
    everything = scopes(*SERVERS)
    for n, server in enumerate(SERVERS):
        tool, arguments = CALLS[server]
        echo = echoed(fleet.gateway.call(server, tool, arguments, f"{server}-{n}", everything))
        assert echo["upstream"] == server
        assert echo["path"] == "/mcp"
        # Labelled from the route metadata the EnvoyFilter merged into istiod's route.
        assert header(echo, "x-mcp-server-id") == [server]
        assert header(echo, "x-mcp-tool-name") == [tool]
        assert header(echo, "x-agent-id") == [AGENT]
        assert header(echo, "authorization") == CREDENTIALS[server]
    records = audit_records(fleet.gateway.audit_path, len(SERVERS))
    by_server = {r["server_id"]: r for r in records}
    assert set(by_server) == set(SERVERS)
    for server in SERVERS:
        assert by_server[server]["server_version"] == VERSIONS[server]
        assert by_server[server]["tool_name"] == CALLS[server][0]
        assert by_server[server]["decision"] == "allowed"


def test_a_tool_of_one_server_through_another_servers_route_is_refused(fleet):
    response = fleet.gateway.call("financial-data", "get_forecast", {"city": "Oslo"}, "x-1", scopes(*SERVERS))
    assert response.status == 403
    assert response.json()["error"]["code"] == -31011
    response = fleet.gateway.call("hr-directory", "find_employee", {"name": "Ada"}, "x-2", scopes("weather"))
    assert response.status == 403


def test_the_rendered_rate_limits_apply_per_server(fleet):
    # weather's get_alerts: 5 per second for each agent (registry/examples/weather.yaml).
    # Fixed one-second windows: calls in quick succession meet a 429 once six fall into
    # one window (8 calls can split 4 and 4 across a boundary), so call until then.
    statuses = []
    for i in range(40):
        statuses.append(fleet.gateway.call("weather", "get_alerts", {"city": "Oslo"}, f"rl-{i}", scopes("weather")).status)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    assert statuses[0] == 200 and set(statuses[:-1]) == {200}, statuses


def test_an_unregistered_path_is_404_with_an_audit_record(fleet):
    body, headers = modern_call("get_account_balance", "nobody-1", {"account_id": "acc-001"})
    paths = ("/payments/mcp", "/mcp", "/financial-data/mcp/", "/FINANCIAL-DATA/mcp")
    for path in paths:
        response = request(fleet.gateway.port, "POST", path, body, headers)
        assert response.status == 404, path
        assert response.json()["error"]["code"] == -31014, path
    # The filter's answer (the VirtualService's direct response would leave no record).
    mine = lambda records: [r for r in records if r["server_id"] is None]  # noqa: E731
    records = mine(audit_records(fleet.gateway.audit_path, until=lambda rs: len(mine(rs)) >= len(paths)))
    assert len(records) == len(paths)
    assert all(r["error_code"] == -31014 and r["http_status"] == 404 for r in records), records


def test_validating_servers_send_their_body_to_ext_authz_on_istio(fleet):
    """The rendered route patches carry the ext_authz body settings istiod's routes
    lack: a call that breaks weather's schema (validation `report`) is audited with the
    place its arguments fail; without the body the authz-service could only say it
    cannot read them."""
    everything = scopes(*SERVERS)
    echoed(fleet.gateway.call("weather", "get_forecast", {"city": "Oslo", "days": 9}, "body-bad", everything))
    echoed(fleet.gateway.call("weather", "get_forecast", {"city": "Oslo", "days": 2}, "body-good", everything))
    wanted = {"body-bad", "body-good"}
    records = audit_records(fleet.gateway.audit_path, until=lambda rs: wanted <= {r.get("jsonrpc_id") for r in rs})
    by_id = {r["jsonrpc_id"]: r for r in records if r.get("jsonrpc_id") in wanted}
    assert by_id["body-bad"]["schema_violation"].startswith("/days:"), by_id["body-bad"]
    assert by_id["body-bad"]["decision"] == "allowed"
    assert by_id["body-good"]["schema_violation"] is None


def without_route_metadata(envoy_filter: dict) -> dict:
    """The rendered EnvoyFilter with no route metadata in its HTTP_ROUTE patches."""
    envoy_filter = copy.deepcopy(envoy_filter)
    for patch in envoy_filter["spec"]["configPatches"]:
        if patch["applyTo"] == "HTTP_ROUTE":
            patch["patch"]["value"].pop("metadata", None)
    return envoy_filter


def test_without_the_route_metadata_patch_nothing_is_labelled_or_allowed(fleet):
    """The control: the same gateway without the metadata MERGE. The filter labels by
    route metadata only, so a registered server's call does not reach it, and the
    filter, which sees no server and no unregistered mark, writes no audit record:
    what the tests above assert fails here."""
    gateway = Gateway(fleet.logs, fleet.istio_bootstrap(without_route_metadata(fleet.envoy_filter)), fleet.authz, fleet.ratelimit, "no-metadata")
    try:
        tool, arguments = CALLS["weather"]
        response = gateway.call("weather", tool, arguments, "control-1", scopes(*SERVERS))
        assert response.status == 404, response.body[:300]
        assert response.json()["error"]["code"] == -31014
        body, headers = modern_call("get_account_balance", "control-2", {"account_id": "acc-001"})
        assert request(gateway.port, "POST", "/payments/mcp", body, headers).status == 404
        assert audit_records(gateway.audit_path, until=lambda records: False, timeout=1.5) == []
    finally:
        gateway.envoy.stop()


# --- Every rendered document passes the checks the shipped ones do.


def rendered_documents(fleet, folder: str) -> list[tuple[str, dict]]:
    return [(p.name, doc) for p in sorted((fleet.out / folder).glob("*.yaml")) for doc in load_all(p)]


def test_kubernetes_documents_validate_strictly(fleet):
    docs = rendered_documents(fleet, "kubernetes")
    assert sorted({doc["kind"] for _, doc in docs}) == ["ConfigMap", "Deployment"]
    for name, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "mcp-gateway", name
    deployment = next(doc for _, doc in docs if doc["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "upstream-credentials"]
    # Where configmaps.yaml's policy looks for each credential.
    assert {(s["secret"]["name"], i["key"], i["path"]) for s in volume["projected"]["sources"] for i in s["secret"]["items"]} == {
        ("financial-data-upstream", "financial-data", "financial-data/financial-data"),
        ("hr-directory-upstream", "authorization", "hr-directory/authorization"),
    }
    assert volume["projected"]["defaultMode"] == 0o440
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "upstream-credentials"]
    assert mount == {"name": "upstream-credentials", "mountPath": "/etc/mcp-gateway/credentials", "readOnly": True}
    policy = yaml.safe_load(next(doc for _, doc in docs if doc["metadata"]["name"] == "mcp-authz-policy")["data"]["policy.yaml"])
    assert {s["upstream_credential_file"] for s in policy["servers"].values() if "upstream_credential_file" in s} == {
        "/etc/mcp-gateway/credentials/financial-data/financial-data",
        "/etc/mcp-gateway/credentials/hr-directory/authorization",
    }
    envoy = next(doc for _, doc in docs if doc["metadata"]["name"] == "mcp-gateway-envoy")
    assert envoy["data"] == {key: (fleet.out / "envoy" / key).read_text() for key in ("clusters.yaml", "routes.yaml")}


def test_the_envoyfilter_has_only_documented_fields(fleet):
    doc = fleet.envoy_filter
    check_envoy_filter_fields(doc)
    # The connection manager settings every deployment carries (test_istio.py).
    (merge,) = [p["patch"]["value"]["typed_config"] for p in doc["spec"]["configPatches"] if p["applyTo"] == "NETWORK_FILTER"]
    assert set(HCM_SETTINGS) <= set(merge)
    # No server of this fleet has a canary: no release metadata is merged into istiod's
    # clusters (the route's server_version is the only version), and no route gets the
    # canary's pick header (test_canary_istio.py has the canary shape).
    assert [p["patch"]["operation"] for p in doc["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"] == ["ADD", "ADD"]
    assert all("weighted_clusters" not in (p["patch"]["value"].get("route") or {}) for p in doc["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE")
    inserted = [p["patch"]["value"] for p in doc["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    settings = json.loads(inserted[0]["typed_config"]["config"]["configuration"]["value"])
    assert settings["servers_from_routes"] is True and "server_id" not in settings


def test_the_gateway_and_virtualservice_have_only_documented_fields(fleet):
    docs = load_all(fleet.routes_file)
    assert [d["kind"] for d in docs] == ["Gateway", "VirtualService"]
    gateway, virtual_service = docs
    assert gateway["apiVersion"] == virtual_service["apiVersion"] == "networking.istio.io/v1"
    assert set(gateway["spec"]) <= {"selector", "servers"}
    assert set(virtual_service["spec"]) <= {"hosts", "gateways", "http", "tls", "tcp", "exportTo"}
    assert virtual_service["spec"]["gateways"] == [gateway["metadata"]["name"]]
    for http in virtual_service["spec"]["http"]:
        assert set(http) <= HTTP_ROUTE_FIELDS, http
        # Istio's validation refuses timeouts under 1 ms ("0s" included) and below ms precision.
        if "timeout" in http:
            number, unit = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", http["timeout"]).groups()
            seconds = float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
            assert seconds >= 0.001 and round(seconds * 1000, 6).is_integer(), http
        for match in http.get("match", []):
            assert "ignoreUriCase" not in match
    servers = [h for h in virtual_service["spec"]["http"] if h["name"].startswith("mcp-server-")]
    # Exact matches on the exposure paths only (test_path_variants.py's reasoning).
    assert [m for h in servers for m in h["match"]] == [{"uri": {"exact": f"/{s}/mcp"}} for s in SERVERS]
    clusters = {outbound_cluster(h["route"][0]["destination"]) for h in servers}
    assert len(clusters) == len(SERVERS)
