"""The Istio EnvoyFilters (envoy/istio/): documented fields only, the same filter
chain as envoy/envoy.yaml, and, assembled into a bootstrap the way Istio applies
patches, accepted by `envoy --mode validate` and running requests end to end."""

from __future__ import annotations

import copy

import anyio
import pytest
import yaml
from e2e.helpers import AGENT, connect, modern_call
from harness import audit_records, free_port, metric, prometheus_when, render_config, request, start_gateway, validate
from harness.envoy import ENVOY_DIR
from harness.istio import (
    APPLY_TO,
    CONTEXTS,
    MATCH_FIELDS,
    NESTED_FIELDS,
    OPERATIONS,
    ROUTER,
    SPEC_FIELDS,
    apply,
    envoy_filters,
    load,
)

FILES = envoy_filters()
SHIPPED = yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text())
SHIPPED_HCM = SHIPPED["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


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

    hcm = next(p for p in patches if p["applyTo"] == "NETWORK_FILTER")["patch"]["value"]["typed_config"]
    assert hcm["access_log"] == SHIPPED_HCM["access_log"]
    assert hcm["local_reply_config"] == SHIPPED_HCM["local_reply_config"]
    mcp_route = next(r for r in SHIPPED_HCM["route_config"]["virtual_hosts"][0]["routes"] if r["match"] == {"path": "/mcp"})
    vhost = next(p for p in patches if p["applyTo"] == "VIRTUAL_HOST")["patch"]["value"]
    assert vhost["rate_limits"] == mcp_route["route"]["rate_limits"]
    bootstrap = next(p for p in patches if p["applyTo"] == "BOOTSTRAP")["patch"]["value"]
    assert bootstrap["stats_config"] == SHIPPED["stats_config"]


def assembled(path, logs) -> "Path":
    out = logs / f"istio-{path.stem}.yaml"
    out.write_text(yaml.safe_dump(apply(load(path)), sort_keys=False))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_assembled_bootstrap_validates(path, logs):
    upstreams = {name: free_port() for name in ("mcp_server", "authz_service", "authz_http", "ratelimit_service")}
    rendered = render_config(assembled(path, logs), logs, free_port(), free_port(), upstreams)
    result = validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_assembled_chain_runs_end_to_end(path, logs, mcp_server, authz, ratelimit):
    port, seen = mcp_server
    envoy, listener = start_gateway(
        logs, {"mcp_server": port, **authz.upstreams(), **ratelimit.upstreams()}, source=assembled(path, logs)
    )
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
        assert request(listener, "GET", "/.well-known/oauth-protected-resource/mcp").status == 200

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
