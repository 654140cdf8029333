"""The two Istio variants, both rendered by `mcp-registry render` from the server
manifests (here a fleet of one: the example financial-data manifest, its endpoint and
exposure path /mcp): the ingress gateway's EnvoyFilter, Gateway and VirtualService
(istio/), and the EnvoyFilter for the server's own sidecar (istio-sidecar/, from the
manifest with gateway.istio_sidecar added by harness/istio.py opt_in_sidecar: the
example goes through the gateway, and a server never has both). For both: documented fields only; the filter chain,
connection manager settings and clusters of envoy/fleet.yaml, and the routes of the
rendered envoy/routes.yaml, each one mirrors; and, applied the way istiod applies
patches to the configuration istiod really generates (a catch-all inbound route for
the sidecar, the VirtualService's routes for the gateway: see tests/harness/istio.py),
accepted by `envoy --mode validate` and running requests end to end.
tests/e2e/test_path_variants.py and test_header_hygiene.py send the path variants and
underscore headers through both ("istio-sidecar", "fleet-istio-gateway");
tests/e2e/test_fleet_istio.py runs the rendered gateway for the three-server fleet;
tests/e2e/test_istio_sidecar.py what the sidecar target renders for other manifests."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
    mcp_filter_config,
    opt_in_sidecar,
    outbound_cluster,
    proto_merge,
    sidecar_filters,
    sidecar_skeleton,
    sidecar_upstreams,
)
from harness.ratelimit import Ratelimit

# Hand-written Istio files under envoy/istio/: none (test_deploy.py's inventory of
# envoy/ takes this list).
FILES = envoy_filters()
FLEET = yaml.safe_load((ENVOY_DIR / "fleet.yaml").read_text())
FLEET_HCM = connection_manager(FLEET)
# The connection manager settings every deployment must carry as envoy/fleet.yaml does.
HCM_SETTINGS = [
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "common_http_protocol_options",
    "access_log",
    "local_reply_config",
]
VARIANTS = ["gateway", "sidecar"]
SERVER = "financial-data"
# The upstream credential the financial-data manifest registers (the authz-service
# puts it on each allowed request in place of the client's token).
CREDENTIAL = (EXAMPLES / "credentials" / "financial-data").read_text().strip()


def render_gateway(log_dir: Path, mcp_port: int, with_sidecar: bool = False) -> Rendered:
    """`mcp-registry render` of a fleet of one: the example financial-data manifest,
    its endpoint on loopback port `mcp_port` (path /mcp), exposed at /mcp: the
    gateway's variant (istio/). With `with_sidecar`, the manifest opted in to its sidecar
    (opt_in_sidecar) and rendered again: its EnvoyFilter on container port `mcp_port`."""
    rendered = Rendered(log_dir, {SERVER: mcp_port}, paths={SERVER: "/mcp"})
    if with_sidecar:
        opt_in_sidecar(rendered.manifests)
        rendered.written = rendered.render()
    return rendered


@dataclass
class Variant:
    """One Istio variant as rendered, with the rendered plain-Envoy routes it mirrors
    (its filters, clusters and connection manager settings are envoy/fleet.yaml's)."""

    name: str
    envoy_filter: dict
    skeleton: dict  # what istiod generates before the patches
    routes: list[dict]  # the rendered plain-Envoy routes it must serve the same way
    mcp_cluster: str  # istiod's cluster for the MCP server
    manifest: dict  # the server's manifest as rendered

    @property
    def hcm(self) -> dict:
        return FLEET_HCM

    def assembled(self) -> dict:
        return apply(self.envoy_filter, self.skeleton)


def manifest(rendered: Rendered) -> dict:
    return yaml.safe_load((rendered.manifests / f"{SERVER}.yaml").read_text())


def sidecar(rendered: Rendered) -> Variant:
    """The server's sidecar EnvoyFilter (istio-sidecar/envoyfilters.yaml) on istiod's
    inbound configuration for its port."""
    envoy_filter = sidecar_filters(rendered.out)[SERVER]
    routes = route_list(rendered.out / "envoy" / "routes.yaml")
    return Variant("sidecar", envoy_filter, sidecar_skeleton(), routes, INBOUND_CLUSTER, manifest(rendered))


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
        routes,
        server,
        manifest(rendered),
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    # Port 8000: istiod's inbound cluster for it is the harness's INBOUND_CLUSTER.
    return render_gateway(tmp_path_factory.mktemp("istio"), 8000)


@pytest.fixture(scope="module")
def rendered_with_sidecar(tmp_path_factory) -> Rendered:
    return render_gateway(tmp_path_factory.mktemp("istio-sidecar"), 8000, with_sidecar=True)


@pytest.fixture(params=VARIANTS)
def istio(request, rendered, rendered_with_sidecar) -> Variant:
    return gateway(rendered) if request.param == "gateway" else sidecar(rendered_with_sidecar)


def test_no_istio_resource_is_hand_written():
    """Both variants hold server facts (ids, tools, paths, the server's pods): both are
    rendered from the manifests, and no hand-written copy of them remains in envoy/."""
    assert FILES == []
    assert not ISTIO_DIR.exists() or not any(ISTIO_DIR.iterdir())
    assert not list(ENVOY_DIR.rglob("*envoyfilter*")), "a hand-written EnvoyFilter under envoy/"


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


def without_mcp_config(http_filter: dict) -> dict:
    """A filter with the MCP filter's own configuration left out (compared on its own)."""
    http_filter = without_wasm_file(http_filter)
    config = http_filter["typed_config"].get("config", {}).get("configuration")
    if config:
        config["value"] = "<the MCP filter's configuration>"
    return http_filter


def test_patches_carry_the_shipped_chain(istio):
    """Not a copy that can drift: every filter, cluster and HCM setting in the patches
    is the one envoy/fleet.yaml ships (the wasm file path and addresses aside), and the
    MCP filter's configuration is fleet.yaml's: as it is on the gateway (the routes name
    the servers), naming the one server from its manifest in the sidecar."""
    patches = istio.envoy_filter["spec"]["configPatches"]
    inserted = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"]
    shipped = [f for f in istio.hcm["http_filters"] if f["name"] != ROUTER]
    assert [without_mcp_config(f) for f in inserted] == [without_mcp_config(f) for f in shipped]
    assert all(p["patch"]["operation"] == "INSERT_BEFORE" for p in patches if p["applyTo"] == "HTTP_FILTER")
    assert inserted[0]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    assert inserted[0]["typed_config"]["config"]["failure_policy"] == "FAIL_RELOAD"

    fleet_config = json.loads(shipped[0]["typed_config"]["config"]["configuration"]["value"])
    config = mcp_filter_config(istio.envoy_filter)
    if istio.name == "gateway":
        assert config == fleet_config
    else:
        one_server = {key: value for key, value in fleet_config.items() if key != "servers_from_routes"}
        assert config == {
            **one_server,
            "server_id": SERVER,
            "server_version": istio.manifest["version"],
            # The server's own path: the sidecar sees the request as the server does.
            "mcp_paths": [urlsplit(istio.manifest["endpoint"]).path],
            "metrics": {"tool_names": [tool["name"] for tool in istio.manifest["tools"]]},
        }
        assert config["max_body_bytes"] == fleet_config["max_body_bytes"]

    added = {p["patch"]["value"]["name"]: p["patch"]["value"] for p in patches if p["applyTo"] == "CLUSTER"}
    shipped_clusters = {c["name"]: c for c in FLEET["static_resources"]["clusters"]}
    # The MCP server's cluster is istiod's; on the gateway so is the authz-service's
    # HTTP port (the VirtualService routes the RFC 9728 metadata to its Service).
    expected = {"sidecar": {"authz_service", "authz_http", "ratelimit_service"}, "gateway": {"authz_service", "ratelimit_service"}}
    assert set(added) == expected[istio.name]
    for name, cluster in added.items():
        assert without_address(cluster) == without_address(shipped_clusters[name]), name

    (merge,) = [p["patch"]["value"]["typed_config"] for p in patches if p["applyTo"] == "NETWORK_FILTER"]
    assert {key: merge.get(key) for key in HCM_SETTINGS} == {key: istio.hcm[key] for key in HCM_SETTINGS}
    bootstrap = next(p for p in patches if p["applyTo"] == "BOOTSTRAP")["patch"]["value"]
    assert bootstrap["stats_config"] == FLEET["stats_config"]


def test_the_rendered_envoy_configuration_agrees_on_the_connection_manager(rendered):
    # The plain-Envoy configuration render writes carries fleet.yaml's settings too, so
    # a path or header refused on one deployment is refused on every other.
    standalone = yaml.safe_load((rendered.out / "envoy" / "standalone.yaml").read_text())
    assert {key: connection_manager(standalone)[key] for key in HCM_SETTINGS} == {key: FLEET_HCM[key] for key in HCM_SETTINGS}


def test_every_patch_applies_to_what_istiod_generates(istio):
    """Istio ignores a patch that matches nothing; the harness refuses it. Applied to
    istiod's shape, every connection manager setting of fleet.yaml is in force (a MERGE
    that Istio's own values outranked would show here)."""
    hcm = connection_manager(istio.assembled())
    assert {key: hcm.get(key) for key in HCM_SETTINGS} == {key: FLEET_HCM[key] for key in HCM_SETTINGS}


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
    case-sensitively (on the gateway the server's exposure path; in the sidecar the
    endpoint's own path, the filter's mcp_paths), and carries the rendered plain-Envoy
    route's rate limit actions (the server's id first: the rendered limits sit under
    it) and timeouts, and on the gateway the route metadata the filter labels requests
    with; nothing else goes there, and whatever no route takes gets the JSON-RPC 404."""
    bootstrap = istio.assembled()
    (route,) = routes_to(bootstrap)[istio.mcp_cluster]
    assert route_match(route) == {"path": "/mcp"}
    (shipped,) = [r for r in istio.routes if r["match"].get("path") == "/mcp"]
    rate_limits = route["route"].get("rate_limits") or route["vhost"].get("rate_limits")
    assert rate_limits == shipped["route"]["rate_limits"]
    assert rate_limits[0]["actions"][0] == {"generic_key": {"descriptor_key": "server_id", "descriptor_value": SERVER}}
    assert route["route"]["timeout"] == shipped["route"]["timeout"]
    assert route["route"].get("idle_timeout") == shipped["route"].get("idle_timeout")
    routes = connection_manager(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    last, shipped_last = routes[-1], istio.routes[-1]
    assert shipped_last["direct_response"]["status"] == 404
    assert json.loads(shipped_last["direct_response"]["body"]["inline_string"])["error"]["code"] == -31014
    # Both end with the rendered catch-all's answer, and begin with the rendered RFC 9728
    # metadata route (no token needed).
    for key in ("direct_response", "response_headers_to_add"):
        assert last[key] == shipped_last[key], key
    assert routes[0]["typed_per_filter_config"] == istio.routes[0]["typed_per_filter_config"]
    if istio.name == "sidecar":
        # Istio's catch-all to the server is gone; the rendered routes took its place,
        # in order. The filter names its one server, so the routes carry no metadata,
        # and the request arrives at the server's own path: no rewrite.
        assert [r["name"] for r in routes] == ["mcp-oauth-metadata", f"mcp-server/{SERVER}", "mcp-unregistered"]
        assert routes[0] == istio.routes[0]
        assert route_match(last) == shipped_last["match"] == {"prefix": "/"}
        assert "metadata" not in route and "metadata" not in last
        assert route["route"]["cluster"] == INBOUND_CLUSTER
        assert not {"prefix_rewrite", "host_rewrite_literal", "retry_policy"} & set(route["route"])
    else:
        # The rendered plain-Envoy routes, one for one and in order: the metadata route,
        # the server's, the catch-all the filter answers (marked unregistered: 404
        # -31014 with an audit record).
        assert route["metadata"]["filter_metadata"]["mcp_gateway"] == shipped["metadata"]["filter_metadata"]["mcp_gateway"]
        assert [route_match(r) for r in routes] == [r["match"] for r in istio.routes]
        assert [r["name"] for r in routes] == ["mcp-oauth-metadata", "mcp-server-financial-data", "mcp-unregistered"]
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
    """The official SDK's demo server behind each variant, with the real services on
    the policy and limits rendered with it (what the manifest registers: its scopes,
    limits, credential)."""
    port, seen = mcp_server
    started = []
    try:
        if name == "sidecar":
            # Rendered for container port 8000 (istiod's INBOUND_CLUSTER), which the
            # assembled bootstrap then points at the server's real port.
            rendered = render_gateway(logs / "sidecar", 8000, with_sidecar=True)
            istio = sidecar(rendered)
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
        # Labelled by the filter, identity from the authz-service, the credential the
        # manifest registers in place of the client's token.
        calls = [p for p in seen.posts() if p.get("x-mcp-method") == "tools/call"]
        assert len(calls) == 1, seen.records()
        post = calls[0]
        assert post["x-mcp-server-id"] == "financial-data"
        assert post["x-mcp-tool-name"] == "get_account_balance"
        assert post["x-agent-id"] == AGENT
        assert post.get("authorization") == CREDENTIAL

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
        # The registered version: from the route metadata on the gateway, from the
        # filter's own configuration in the sidecar.
        assert {r["server_version"] for r in records if r["tool_name"]} == {istio.manifest["version"]}
        samples = prometheus_when(envoy.admin_port, lambda s: True)
        labels = {"mcp_server": "financial-data", "mcp_tool": "get_account_balance"}
        assert metric(samples, "mcp_tool_calls_total", **labels, mcp_outcome="success") == 1
        assert metric(samples, "mcp_tool_calls_total", **labels, mcp_outcome="denied") == 1
    finally:
        for process in reversed(started):
            process.stop()
