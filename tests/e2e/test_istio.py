"""The Istio EnvoyFilters (envoy/istio/): documented fields only, the same filter
chain, connection manager settings and routes as envoy/envoy.yaml, and, applied the way
istiod applies patches to the configuration istiod really generates (a catch-all
inbound route for the sidecar, the VirtualService's routes for the gateway: see
tests/harness/istio.py), accepted by `envoy --mode validate` and running requests end to
end. tests/e2e/test_path_variants.py sends the path variants through them."""

from __future__ import annotations

import copy
import json

import anyio
import pytest
import yaml
from e2e.helpers import AGENT, connect, modern_call
from harness import audit_records, free_port, metric, prometheus_when, render_config, request, start_gateway, validate
from harness.envoy import ENVOY_DIR, connection_manager
from harness.istio import (
    APPLY_TO,
    CONTEXTS,
    INBOUND_CLUSTER,
    MATCH_FIELDS,
    NESTED_FIELDS,
    OPERATIONS,
    ROUTER,
    SPEC_FIELDS,
    UnmatchedPatch,
    apply,
    envoy_filters,
    gateway_host,
    gateway_skeleton,
    load,
    proto_merge,
    sidecar_skeleton,
    upstream_ports,
    variant,
)

FILES = envoy_filters()
ISTIO_ROUTES = ENVOY_DIR / "istio" / "istio-virtualservice.yaml"
SHIPPED = yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text())
SHIPPED_HCM = connection_manager(SHIPPED)
SHIPPED_ROUTES = SHIPPED_HCM["route_config"]["virtual_hosts"][0]["routes"]
# The connection manager settings every deployment must carry as envoy.yaml does.
HCM_SETTINGS = [
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "common_http_protocol_options",
    "access_log",
    "local_reply_config",
]


def test_both_variants_ship():
    assert [p.name for p in FILES] == ["gateway-envoyfilter.yaml", "sidecar-envoyfilter.yaml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_only_documented_envoyfilter_fields(path):
    doc = load(path)
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


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_patches_carry_the_shipped_chain(path):
    """Not a copy that can drift: every filter, cluster and HCM setting in the patches
    is the one envoy/envoy.yaml ships (the wasm file path and addresses aside)."""
    patches = load(path)["spec"]["configPatches"]
    inserted = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"]
    shipped = [f for f in SHIPPED_HCM["http_filters"] if f["name"] != ROUTER]
    assert [without_wasm_file(f) for f in inserted] == [without_wasm_file(f) for f in shipped]
    assert all(p["patch"]["operation"] == "INSERT_BEFORE" for p in patches if p["applyTo"] == "HTTP_FILTER")
    assert inserted[0]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    assert inserted[0]["typed_config"]["config"]["failure_policy"] == "FAIL_RELOAD"

    added = {p["patch"]["value"]["name"]: p["patch"]["value"] for p in patches if p["applyTo"] == "CLUSTER"}
    for cluster in SHIPPED["static_resources"]["clusters"]:
        if cluster["name"] != "mcp_server":
            assert without_address(added[cluster["name"]]) == without_address(cluster)

    (merge,) = [p["patch"]["value"]["typed_config"] for p in patches if p["applyTo"] == "NETWORK_FILTER"]
    assert {key: merge.get(key) for key in HCM_SETTINGS} == {key: SHIPPED_HCM[key] for key in HCM_SETTINGS}
    bootstrap = next(p for p in patches if p["applyTo"] == "BOOTSTRAP")["patch"]["value"]
    assert bootstrap["stats_config"] == SHIPPED["stats_config"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_patch_applies_to_what_istiod_generates(path):
    """Istio ignores a patch that matches nothing; the harness refuses it. Applied to
    istiod's shape, every connection manager setting of envoy.yaml is in force (a MERGE
    that Istio's own values outranked would show here)."""
    bootstrap = apply(load(path))
    hcm = connection_manager(bootstrap)
    assert {key: hcm.get(key) for key in HCM_SETTINGS} == {key: SHIPPED_HCM[key] for key in HCM_SETTINGS}


def test_a_patch_aimed_at_a_route_istiod_does_not_generate_is_refused():
    # The metadata route exists on the gateway (from the VirtualService), not in a
    # sidecar's inbound configuration: merging into it there would silently do nothing.
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


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_only_the_mcp_path_reaches_the_mcp_server(path):
    """After the patches, the one route to the MCP server matches exactly /mcp,
    case-sensitively (the filter's mcp_paths), and carries envoy.yaml's rate limit
    actions and timeouts; nothing else goes there."""
    bootstrap = apply(load(path))
    clusters = routes_to(bootstrap)
    mcp_cluster = INBOUND_CLUSTER if variant(load(path)) == "sidecar" else next(c for c in clusters if c.startswith("outbound|8000||"))
    (route,) = clusters[mcp_cluster]
    assert route["match"] in ({"path": "/mcp"}, {"path": "/mcp", "case_sensitive": True})
    (shipped,) = [r for r in SHIPPED_ROUTES if r.get("route", {}).get("cluster") == "mcp_server"]
    rate_limits = route["route"].get("rate_limits") or route["vhost"].get("rate_limits")
    assert rate_limits == shipped["route"]["rate_limits"]
    assert route["route"]["timeout"] == shipped["route"]["timeout"]
    routes = connection_manager(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    # Whatever no route above takes gets envoy.yaml's JSON-RPC 404.
    assert routes[-1] == SHIPPED_ROUTES[-1] and SHIPPED_ROUTES[-1]["direct_response"]["status"] == 404
    if variant(load(path)) == "sidecar":
        # The sidecar's routes are envoy.yaml's, in the same order, but for the cluster.
        renamed = json.loads(json.dumps(SHIPPED_ROUTES).replace('"mcp_server"', json.dumps(INBOUND_CLUSTER)))
        assert routes == renamed


def assembled(path, logs) -> "Path":
    out = logs / f"istio-{path.stem}.yaml"
    out.write_text(yaml.safe_dump(apply(load(path)), sort_keys=False))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_assembled_bootstrap_validates(path, logs):
    services = {name: free_port() for name in ("authz_service", "authz_http", "ratelimit_service")}
    upstreams = upstream_ports(free_port(), services["authz_http"], services)
    rendered = render_config(assembled(path, logs), logs, free_port(), free_port(), upstreams)
    result = validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def served_on_loopback(path, logs) -> "Path":
    """The assembled bootstrap, for the gateway with the Gateway and VirtualService
    serving host 127.0.0.1 instead of mcp-gateway.example.com: the SDK's demo server
    refuses any other Host (DNS rebinding protection on loopback, 421), and the gateway
    passes the client's Host on. tests/e2e/test_path_variants.py uses the real host."""
    if variant(load(path)) == "sidecar":
        return assembled(path, logs)
    routes = ISTIO_ROUTES.read_text().replace(gateway_host(), "127.0.0.1")
    copied = logs / "istio-virtualservice-loopback.yaml"
    copied.write_text(routes)
    # The EnvoyFilter names the gateway's virtual host after the host too.
    envoy_filter = yaml.safe_load(path.read_text().replace(gateway_host(), "127.0.0.1"))
    out = logs / f"istio-{path.stem}-loopback.yaml"
    out.write_text(yaml.safe_dump(apply(envoy_filter, gateway_skeleton(copied)), sort_keys=False))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_assembled_chain_runs_end_to_end(path, logs, mcp_server, authz, ratelimit):
    port, seen = mcp_server
    upstreams = upstream_ports(port, authz.http_port, {**authz.upstreams(), **ratelimit.upstreams()})
    envoy, listener = start_gateway(logs, upstreams, source=served_on_loopback(path, logs))
    try:
        url = f"http://127.0.0.1:{listener}/mcp"

        async def allowed():
            async with connect(url) as client:
                result = await client.call_tool("get_account_balance", {"account_id": "acc-001"})
                assert not result.is_error

        anyio.run(allowed)
        # Labelled by the filter, identity from the authz-service, no client token.
        calls = [p for p in seen.posts() if p.get("x-mcp-method") == "tools/call"]
        assert len(calls) == 1, seen.records()
        post = calls[0]
        assert post["x-mcp-tool-name"] == "get_account_balance"
        assert post["x-agent-id"] == AGENT
        assert "authorization" not in post

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
        samples = prometheus_when(envoy.admin_port, lambda s: True)
        labels = {"mcp_server": "financial-data", "mcp_tool": "get_account_balance"}
        assert metric(samples, "mcp_tool_calls_total", **labels, mcp_outcome="success") == 1
        assert metric(samples, "mcp_tool_calls_total", **labels, mcp_outcome="denied") == 1
    finally:
        envoy.stop()
