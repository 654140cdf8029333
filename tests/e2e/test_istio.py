"""The two Istio variants: the sidecar EnvoyFilter shipped in envoy/istio/ (a sidecar
fronts one server, so it stays hand-written), and the ingress gateway's EnvoyFilter,
Gateway and VirtualService as `mcp-registry render` writes them from the server
manifests (here a fleet of one: the example financial-data manifest exposed at /mcp,
the path envoy/envoy.yaml serves). For both: documented fields only; the filter chain,
connection manager settings and routes of the plain-Envoy configuration each one
mirrors (envoy/envoy.yaml for the sidecar; envoy/fleet.yaml and the rendered
envoy/routes.yaml for the gateway); and, applied the way istiod applies patches to the
configuration istiod really generates (a catch-all inbound route for the sidecar, the
VirtualService's routes for the gateway: see tests/harness/istio.py), accepted by
`envoy --mode validate` and running requests end to end.
tests/e2e/test_path_variants.py and test_header_hygiene.py send the path variants and
underscore headers through both ("istio-sidecar", "fleet-istio-gateway");
tests/e2e/test_fleet_istio.py runs the rendered gateway for the three-server fleet."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml
from e2e.helpers import AGENT, connect, modern_call
from harness import audit_records, free_port, metric, prometheus_when, render_config, request, start_gateway, validate
from harness.authz import Authz
from harness.envoy import ENVOY_DIR, connection_manager
from harness.fleet import EXAMPLES, Rendered, route_list
from harness.istio import (
    APPLY_TO,
    CONTEXTS,
    INBOUND_CLUSTER,
    ISTIO_DIR,
    MATCH_FIELDS,
    NESTED_FIELDS,
    OPERATIONS,
    ROUTER,
    SPEC_FIELDS,
    UnmatchedPatch,
    apply,
    envoy_filters,
    fleet_gateway_skeleton,
    fleet_upstreams,
    load,
    load_all,
    outbound_cluster,
    proto_merge,
    sidecar_skeleton,
    sidecar_upstreams,
)
from harness.ratelimit import Ratelimit

FILES = envoy_filters()
SIDECAR = ISTIO_DIR / "sidecar-envoyfilter.yaml"
SHIPPED = yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text())
SHIPPED_HCM = connection_manager(SHIPPED)
SHIPPED_ROUTES = SHIPPED_HCM["route_config"]["virtual_hosts"][0]["routes"]
FLEET = yaml.safe_load((ENVOY_DIR / "fleet.yaml").read_text())
# The connection manager settings every deployment must carry as envoy.yaml does.
HCM_SETTINGS = [
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "common_http_protocol_options",
    "access_log",
    "local_reply_config",
]
VARIANTS = ["gateway", "sidecar"]
# The upstream credential the financial-data manifest registers (the authz-service
# puts it on each allowed request in place of the client's token).
CREDENTIAL = (EXAMPLES / "credentials" / "financial-data").read_text().strip()


def render_gateway(log_dir: Path, mcp_port: int) -> Rendered:
    """`mcp-registry render` of a fleet of one: the example financial-data manifest,
    its endpoint on loopback port `mcp_port`, exposed at /mcp."""
    return Rendered(log_dir, {"financial-data": mcp_port}, paths={"financial-data": "/mcp"})


@dataclass
class Variant:
    """One Istio variant, and the plain-Envoy configuration whose chain it carries."""

    name: str
    envoy_filter: dict
    skeleton: dict  # what istiod generates before the patches
    shipped: dict  # the plain-Envoy bootstrap with the same filters and settings
    routes: list[dict]  # the plain-Envoy routes it must serve the same way
    mcp_cluster: str  # istiod's cluster for the MCP server

    @property
    def hcm(self) -> dict:
        return connection_manager(self.shipped)

    def assembled(self) -> dict:
        return apply(self.envoy_filter, self.skeleton)


def sidecar() -> Variant:
    return Variant("sidecar", load(SIDECAR), sidecar_skeleton(), SHIPPED, SHIPPED_ROUTES, INBOUND_CLUSTER)


def gateway(rendered: Rendered) -> Variant:
    istio = rendered.out / "istio"
    routes_file = istio / "gateway-virtualservice.yaml"
    (virtual_service,) = [d for d in load_all(routes_file) if d["kind"] == "VirtualService"]
    (server,) = [outbound_cluster(h["route"][0]["destination"]) for h in virtual_service["spec"]["http"] if h["name"] == "mcp-server-financial-data"]
    routes = route_list(rendered.out / "envoy" / "routes.yaml")
    return Variant(
        "gateway",
        load(istio / "gateway-envoyfilter.yaml"),
        fleet_gateway_skeleton(routes_file),
        FLEET,
        routes,
        server,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    return render_gateway(tmp_path_factory.mktemp("istio-gateway"), 8000)


@pytest.fixture(params=VARIANTS)
def istio(request, rendered) -> Variant:
    return gateway(rendered) if request.param == "gateway" else sidecar()


def test_only_the_sidecar_variant_is_hand_written():
    """The gateway's resources hold server facts (ids, tools, paths): they are rendered
    from the manifests, and no hand-written copy of them remains in envoy/istio/."""
    assert [p.name for p in FILES] == ["sidecar-envoyfilter.yaml"]
    assert sorted(p.name for p in ISTIO_DIR.iterdir()) == ["sidecar-envoyfilter.yaml"]


def test_only_documented_envoyfilter_fields(istio):
    check_envoy_filter_fields(istio.envoy_filter)


def check_envoy_filter_fields(doc: dict) -> None:
    """An EnvoyFilter has only the fields and values Istio documents."""
    assert doc["apiVersion"] == "networking.istio.io/v1alpha3"
    assert doc["kind"] == "EnvoyFilter"
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    assert set(doc["spec"]) <= SPEC_FIELDS
    assert doc["spec"]["workloadSelector"]["labels"]
    for patch in doc["spec"]["configPatches"]:
        assert set(patch) == {"applyTo", "match", "patch"}
        assert patch["applyTo"] in APPLY_TO
        assert set(patch["match"]) <= MATCH_FIELDS
        assert patch["match"]["context"] in CONTEXTS
        assert set(patch["patch"]) <= {"operation", "value", "filterClass"}
        assert patch["patch"]["operation"] in OPERATIONS
        check_nested(patch["match"])


def check_nested(match: dict) -> None:
    for key, value in match.items():
        if key in NESTED_FIELDS and isinstance(value, dict):
            assert set(value) <= NESTED_FIELDS[key], (key, value)
            check_nested(value)


def without_wasm_file(http_filter: dict) -> dict:
    http_filter = copy.deepcopy(http_filter)
    vm = http_filter["typed_config"].get("config", {}).get("vm_config")
    if vm:
        vm["code"]["local"]["filename"] = "<the .wasm>"
    return http_filter


def without_address(cluster: dict) -> dict:
    cluster = copy.deepcopy(cluster)
    cluster.pop("type")
    for group in cluster["load_assignment"]["endpoints"]:
        for endpoint in group["lb_endpoints"]:
            endpoint["endpoint"]["address"]["socket_address"] = "<address>"
    return cluster


def test_patches_carry_the_shipped_chain(istio):
    """Not a copy that can drift: every filter, cluster and HCM setting in the patches
    is the one the plain-Envoy configuration ships (the wasm file path and addresses
    aside): envoy/envoy.yaml for the sidecar, envoy/fleet.yaml for the gateway."""
    patches = istio.envoy_filter["spec"]["configPatches"]
    inserted = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"]
    shipped = [f for f in istio.hcm["http_filters"] if f["name"] != ROUTER]
    assert [without_wasm_file(f) for f in inserted] == [without_wasm_file(f) for f in shipped]
    assert all(p["patch"]["operation"] == "INSERT_BEFORE" for p in patches if p["applyTo"] == "HTTP_FILTER")
    assert inserted[0]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    assert inserted[0]["typed_config"]["config"]["failure_policy"] == "FAIL_RELOAD"

    added = {p["patch"]["value"]["name"]: p["patch"]["value"] for p in patches if p["applyTo"] == "CLUSTER"}
    shipped_clusters = {c["name"]: c for c in istio.shipped["static_resources"]["clusters"]}
    # The MCP server's cluster is istiod's; on the gateway so is the authz-service's
    # HTTP port (the VirtualService routes the RFC 9728 metadata to its Service).
    expected = {"sidecar": {"authz_service", "authz_http", "ratelimit_service"}, "gateway": {"authz_service", "ratelimit_service"}}
    assert set(added) == expected[istio.name]
    for name, cluster in added.items():
        assert without_address(cluster) == without_address(shipped_clusters[name]), name

    (merge,) = [p["patch"]["value"]["typed_config"] for p in patches if p["applyTo"] == "NETWORK_FILTER"]
    assert {key: merge.get(key) for key in HCM_SETTINGS} == {key: istio.hcm[key] for key in HCM_SETTINGS}
    bootstrap = next(p for p in patches if p["applyTo"] == "BOOTSTRAP")["patch"]["value"]
    assert bootstrap["stats_config"] == istio.shipped["stats_config"]


def test_the_plain_envoy_configurations_agree_on_the_connection_manager():
    # Both variants carry the same settings, so a path or header refused on one
    # deployment is refused on every other.
    assert {key: connection_manager(FLEET)[key] for key in HCM_SETTINGS} == {key: SHIPPED_HCM[key] for key in HCM_SETTINGS}


def test_every_patch_applies_to_what_istiod_generates(istio):
    """Istio ignores a patch that matches nothing; the harness refuses it. Applied to
    istiod's shape, every connection manager setting of envoy.yaml is in force (a MERGE
    that Istio's own values outranked would show here)."""
    hcm = connection_manager(istio.assembled())
    assert {key: hcm.get(key) for key in HCM_SETTINGS} == {key: SHIPPED_HCM[key] for key in HCM_SETTINGS}


def test_a_patch_aimed_at_a_route_istiod_does_not_generate_is_refused():
    # The metadata route exists on the gateway (from the VirtualService), not in a
    # sidecar's inbound configuration: merging into it there would silently do nothing.
    # (The gateway's counterpart, a server's patch without its VirtualService route:
    # tests/e2e/test_fleet_istio.py.)
    patch = {
        "applyTo": "HTTP_ROUTE",
        "match": {"context": "SIDECAR_INBOUND", "routeConfiguration": {"portNumber": 8000, "vhost": {"route": {"name": "mcp-oauth-metadata"}}}},
        "patch": {"operation": "MERGE", "value": {"typed_per_filter_config": {}}},
    }
    with pytest.raises(UnmatchedPatch):
        apply({"spec": {"configPatches": [patch]}})


def test_the_harness_merges_as_protobuf_does():
    # MergeFrom: a oneof member replaces its siblings, lists append, messages merge.
    route = {"match": {"prefix": "/", "headers": [{"name": "a"}]}, "route": {"cluster": "x", "timeout": "0s"}}
    proto_merge(route, {"match": {"path": "/mcp", "headers": [{"name": "b"}]}, "direct_response": {"status": 404}})
    assert route == {"match": {"path": "/mcp", "headers": [{"name": "a"}, {"name": "b"}]}, "direct_response": {"status": 404}}
    hcm = {"normalize_path": True, "common_http_protocol_options": {"idle_timeout": "1h"}}
    proto_merge(hcm, {"common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"}})
    assert hcm["common_http_protocol_options"] == {"idle_timeout": "1h", "headers_with_underscores_action": "REJECT_REQUEST"}


def routes_to(bootstrap: dict) -> dict[str, list[dict]]:
    """Cluster (or "direct_response") -> the routes that lead there."""
    out: dict[str, list[dict]] = {}
    for vhost in connection_manager(bootstrap)["route_config"]["virtual_hosts"]:
        for route in vhost["routes"]:
            key = route["route"]["cluster"] if "route" in route else "direct_response"
            out.setdefault(key, []).append(dict(route, vhost=vhost))
    return out


def test_istio_generates_a_catch_all_inbound_route():
    """What the sidecar patches must undo: istiod sends every path to the server."""
    (route,) = routes_to(sidecar_skeleton())[INBOUND_CLUSTER]
    assert route["match"] == {"prefix": "/"}
    assert not connection_manager(sidecar_skeleton()).get("merge_slashes")


def route_match(route: dict) -> dict:
    """A route's match with Envoy's default `case_sensitive: true` left out (istiod
    writes it, the plain-Envoy configurations do not)."""
    match = dict(route["match"])
    if match.get("case_sensitive") is True:
        del match["case_sensitive"]
    return match


def test_only_the_mcp_path_reaches_the_mcp_server(istio):
    """After the patches, the one route to the MCP server matches exactly /mcp,
    case-sensitively (the filter's mcp_paths; on the gateway the server's exposure
    path), and carries the plain-Envoy route's rate limit actions, timeouts and, on the
    gateway, the route metadata the filter labels requests with; nothing else goes
    there, and whatever no route takes gets the JSON-RPC 404."""
    bootstrap = istio.assembled()
    (route,) = routes_to(bootstrap)[istio.mcp_cluster]
    assert route["match"] in ({"path": "/mcp"}, {"path": "/mcp", "case_sensitive": True})
    (shipped,) = [r for r in istio.routes if r["match"].get("path") == "/mcp"]
    rate_limits = route["route"].get("rate_limits") or route["vhost"].get("rate_limits")
    assert rate_limits == shipped["route"]["rate_limits"]
    assert route["route"]["timeout"] == shipped["route"]["timeout"]
    assert route["route"].get("idle_timeout") == shipped["route"].get("idle_timeout")
    assert route.get("metadata", {}).get("filter_metadata", {}).get("mcp_gateway") == shipped.get("metadata", {}).get("filter_metadata", {}).get("mcp_gateway")
    routes = connection_manager(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    last, shipped_last = routes[-1], istio.routes[-1]
    assert shipped_last["direct_response"]["status"] == 404
    assert json.loads(shipped_last["direct_response"]["body"]["inline_string"])["error"]["code"] == -31014
    if istio.name == "sidecar":
        assert last == shipped_last
        # The sidecar's routes are envoy.yaml's, in the same order, but for the cluster.
        renamed = json.loads(json.dumps(SHIPPED_ROUTES).replace('"mcp_server"', json.dumps(INBOUND_CLUSTER)))
        assert routes == renamed
    else:
        # The rendered plain-Envoy routes, one for one and in order: the metadata route
        # (no token needed), the server's, the catch-all the filter answers (marked
        # unregistered: 404 -31014 with an audit record).
        assert [route_match(r) for r in routes] == [r["match"] for r in istio.routes]
        assert [r["name"] for r in routes] == ["mcp-oauth-metadata", "mcp-server-financial-data", "mcp-unregistered"]
        assert routes[0]["typed_per_filter_config"] == istio.routes[0]["typed_per_filter_config"]
        for key in ("direct_response", "response_headers_to_add"):
            assert last[key] == shipped_last[key], key
        assert last["metadata"]["filter_metadata"]["mcp_gateway"] == shipped_last["metadata"]["filter_metadata"]["mcp_gateway"] == {"unregistered": "true"}


def assembled(istio: Variant, logs: Path) -> Path:
    out = logs / f"istio-{istio.name}.yaml"
    out.write_text(yaml.safe_dump(istio.assembled(), sort_keys=False))
    return out


def upstreams(istio: Variant, mcp_port: int, services: dict[str, int]) -> dict[str, int]:
    """Cluster -> loopback port (`services`: the authz/ratelimit clusters, as
    Authz/Ratelimit.upstreams()). The gateway's server cluster is named after the
    rendered endpoint, whose port is the server's already."""
    if istio.name == "sidecar":
        return sidecar_upstreams(mcp_port, services)
    return fleet_upstreams(istio.skeleton, services, services["authz_http"])


def test_assembled_bootstrap_validates(istio, logs):
    services = {name: free_port() for name in ("authz_service", "authz_http", "ratelimit_service")}
    rendered = render_config(assembled(istio, logs), logs, free_port(), free_port(), upstreams(istio, free_port(), services))
    result = validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VARIANTS)
def test_assembled_chain_runs_end_to_end(name, logs, mcp_server):
    """The official SDK's demo server behind each variant, with the real services: for
    the sidecar the demo policy and limits, for the gateway the policy and limits
    rendered with it (what the manifest registers: its scopes, limits, credential)."""
    port, seen = mcp_server
    started = []
    try:
        if name == "sidecar":
            istio = sidecar()
            authz = Authz(logs)
            started.append(authz)
            ratelimit = Ratelimit(logs)
        else:
            rendered = render_gateway(logs / "gateway", port)
            istio = gateway(rendered)
            authz = Authz(logs, policy=rendered.out / "policy.yaml", in_place=True)
            started.append(authz)
            ratelimit = Ratelimit(logs, config_dir=rendered.out / "limits")
        started.append(ratelimit)
        services = {**authz.upstreams(), **ratelimit.upstreams()}
        envoy, listener = start_gateway(logs, upstreams(istio, port, services), source=assembled(istio, logs))
        started.append(envoy)
        url = f"http://127.0.0.1:{listener}/mcp"

        async def allowed():
            async with connect(url) as client:
                result = await client.call_tool("get_account_balance", {"account_id": "acc-001"})
                assert not result.is_error

        anyio.run(allowed)
        # Labelled by the filter, identity from the authz-service, no client token (on
        # the gateway: the credential the manifest registers in its place).
        calls = [p for p in seen.posts() if p.get("x-mcp-method") == "tools/call"]
        assert len(calls) == 1, seen.records()
        post = calls[0]
        assert post["x-mcp-server-id"] == "financial-data"
        assert post["x-mcp-tool-name"] == "get_account_balance"
        assert post["x-agent-id"] == AGENT
        assert post.get("authorization") == (CREDENTIAL if name == "gateway" else None)

        body, headers = modern_call("get_account_balance", 9, {"account_id": "acc-001"}, auth=False)
        refused = request(listener, "POST", "/mcp", body, headers)
        assert refused.status == 401
        assert refused.json()["error"]["code"] == -31010
        assert 'resource_metadata="' in refused.header("www-authenticate")
        # The metadata route is reachable without a token (ext_authz disabled on it).
        metadata = request(listener, "GET", "/.well-known/oauth-protected-resource/mcp")
        assert metadata.status == 200 and "authorization_servers" in metadata.json(), metadata.body

        def outcomes(records):
            return {(r["decision"], r["http_status"]) for r in records if r["tool_name"]}

        expected = {("allowed", 200), ("denied", 401)}
        records = audit_records(envoy.audit_path, until=lambda records: outcomes(records) >= expected)
        assert outcomes(records) >= expected, records
        assert {r["server_id"] for r in records if r["tool_name"]} == {"financial-data"}
        samples = prometheus_when(envoy.admin_port, lambda s: True)
        labels = {"mcp_server": "financial-data", "mcp_tool": "get_account_balance"}
        assert metric(samples, "mcp_tool_calls_total", **labels, mcp_outcome="success") == 1
        assert metric(samples, "mcp_tool_calls_total", **labels, mcp_outcome="denied") == 1
    finally:
        for process in reversed(started):
            process.stop()
