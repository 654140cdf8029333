"""No path variant reaches an MCP server unlabelled, on any shipped deployment.

The filter labels only its exact `mcp_paths`; many MCP servers also answer `/MCP`,
`/mcp/`, `//mcp`, `/mcp%2F`, `/mcp;x` (Express, Go and Java routers, decoding
frameworks). Each variant below is sent as a real tools/call, over HTTP/1.1 and HTTP/2,
with a valid token that has the tool's scopes and with one that has none, through the
real Envoy, filter, authz-service and ratelimit-service, to an upstream that executes
tools/call on every such variant (tests/harness/lenient_upstream.py). Every request is
either labelled by the filter (and then decided on its labels: 200 with the scopes, 403
without) or refused; none is executed unlabelled.

The deployments are what `mcp-registry render` writes (tests/e2e/deployments.py): the
standalone Envoy config, the bootstrap with live xDS files, the Istio sidecar
EnvoyFilter applied to what istiod really generates (one catch-all `prefix: /` route to
the server, see tests/harness/istio.py; the filter names its one server there), and
Istio's ingress gateway (the filter labels by the route's metadata; every other path is
the unregistered catch-all).
"""

from __future__ import annotations

import pytest
import yaml
from harness.authz import READ_SCOPES
from harness.istio import apply
from harness.lenient_upstream import MCP_PATH, lenient_path
from harness.paths import raw_request

from e2e.deployments import (  # noqa: F401 (fixtures)
    AGENT,
    NO_SCOPES,
    sidecar_filter,
    TOOL,
    deployment,
    header,
    jsonrpc_error_code,
    probe,
    services,
    start,
)

# After Envoy's normalisation (normalize_path, merge_slashes) these are "/mcp" for the
# route and for the filter alike: they are labelled like "/mcp" itself.
LABELLED = [
    "/mcp",
    "/mcp?x=1",
    "/mcp?",
    "//mcp",
    "///mcp",
    "/./mcp",
    "/x/../mcp",
    "/%2e/mcp",
    "/m%63p",
    "/%6Dcp",
    "http://{host}/mcp",
    "http://{host}//mcp",
]
# Everything else a lenient server takes for /mcp: refused (404, or 400 for what Envoy
# cannot normalise: escaped slashes and backslashes, NUL, fragments).
REFUSED = [
    "/MCP",
    "/Mcp",
    "/Mcp?x=1",
    "/MCP/",
    "/mcp/",
    "/mcp/.",
    "/mcp/..",
    "/mcp%2F",
    "/mcp%2f",
    "/%2Fmcp",
    "/mcp%5C",
    "/mcp\\",
    "/mcp;x",
    "/mcp;",
    "/mcp%3Bx",
    "/mcp%2e",
    "/mcp.",
    "/mcp%20",
    "/mcp%3Fx",
    "/mcp%23x",
    "/mcp#x",
    "/mcp%00",
    "HTTP://{host}/MCP",
    "http://{host}/mcp/",
    "/.well-known/oauth-protected-resource/../mcp",
    "/.well-known/oauth-protected-resource/..%2Fmcp",
]
# HTTP/2 has :authority instead of absolute-form targets; the rest are sent as :path
# unchanged, plus paths without the leading slash and an absolute URI as :path.
H2_LABELLED = [t for t in LABELLED if not t.startswith("http")]
H2_REFUSED = [t for t in REFUSED if not t.lower().startswith("http")] + ["mcp", "MCP", "http://{host}/mcp"]


def test_the_upstream_executes_every_variant(services):
    """The threat is real: sent to the MCP server directly, every variant executes."""
    for target in LABELLED + REFUSED:
        target = target.format(host="127.0.0.1")
        if lenient_path(target) != MCP_PATH:
            continue  # dot segments out of /mcp, NUL: not /mcp even for a lenient server
        response = raw_request(services.upstream_port, "POST", target, [("content-type", "application/json")],
                               b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}')
        assert response.status == 200, (target, response.status)
    executed = {r["target"] for r in services.received.records() if r["executed"] == "t"}
    assert {"/MCP", "/mcp/", "/mcp%2F", "/mcp;x", "/mcp%3Bx", "/mcp."} <= executed


def is_labelled(p) -> bool:
    return p.target in (LABELLED if p.protocol == "http/1.1" else H2_LABELLED)


def check(probes):
    """The invariant, and the exact split between labelled and refused variants."""
    problems = []
    for p in probes:
        labelled_variant = is_labelled(p)
        for record in p.received:
            # Anything that reached the server carries the filter's labels and the
            # verified agent, and only a call the token's scopes allow gets there.
            labels = {name: header(record, name) for name in ("x-mcp-server-id", "x-mcp-method", "x-mcp-tool-name", "x-agent-id")}
            if labels != {"x-mcp-server-id": "financial-data", "x-mcp-method": "tools/call", "x-mcp-tool-name": TOOL, "x-agent-id": AGENT}:
                problems.append(f"UNLABELLED at the server: {p} {labels} {record['request_line']!r}")
            if header(record, "authorization"):
                problems.append(f"client token at the server: {p}")
        if labelled_variant:
            want = (200, 1) if p.scopes == READ_SCOPES else (403, 0)
            if (p.status, len(p.received)) != want:
                problems.append(f"expected labelled {want}: {p} received={len(p.received)}")
            if p.scopes != READ_SCOPES and jsonrpc_error_code(p.response) != -31011:
                problems.append(f"403 without the authz-service's JSON-RPC error: {p}")
        else:
            if p.received or p.status not in (0, 400, 404):
                problems.append(f"expected refused: {p} received={len(p.received)}")
            # Envoy's 400 for a path it cannot normalise gets the JSON-RPC body from a
            # local reply mapper, the 404 from the catch-all route or the authz-service.
            if p.status in (400, 404) and jsonrpc_error_code(p.response) != -31014:
                problems.append(f"refusal without the JSON-RPC error -31014: {p}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scopes", [READ_SCOPES, NO_SCOPES], ids=["read-scopes", "no-scopes"])
def test_path_variants_are_labelled_or_refused(deployment, services, scopes):
    probes = [probe(deployment, services, t, "http/1.1", scopes) for t in LABELLED + REFUSED]
    probes += [probe(deployment, services, t, "h2", scopes) for t in H2_LABELLED + H2_REFUSED]
    check(probes)
    # Each labelled call left its audit record, decided on its labels.
    want = {p.jsonrpc_id: ("allowed" if scopes == READ_SCOPES else "denied") for p in probes if is_labelled(p)}
    records = deployment.audit(until=lambda rs: want.keys() <= {r["jsonrpc_id"] for r in rs})
    decisions = {r["jsonrpc_id"]: r["decision"] for r in records if r["jsonrpc_id"] in want}
    assert decisions == want
    assert all(r["tool_name"] == TOOL and r["server_id"] == "financial-data" for r in records if r["jsonrpc_id"] in want)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_stream_and_session_requests_on_path_variants_are_refused(deployment, services, method):
    """The handshake-era GET stream and DELETE: on a variant path they are refused too
    (a lenient server would open a stream or end a session there)."""
    for target in ["/MCP", "/mcp/", "/mcp;x", "/mcp%2F", "/Mcp?x=1"]:
        for protocol in ("http/1.1", "h2"):
            p = probe(deployment, services, target, protocol, method=method)
            assert not p.received and p.status in (0, 400, 404), str(p)


def test_the_stream_request_on_the_mcp_path_carries_the_server_label(deployment, services):
    """What does reach the server on the MCP path is labelled with its server id, the
    handshake-era GET stream included. (Needs the filter to label GET: the lead's
    change.)"""
    p = probe(deployment, services, "/mcp", method="GET")
    assert p.status == 200 and len(p.received) == 1, str(p)
    assert header(p.received[0], "x-mcp-server-id") == "financial-data", p.received[0]["headers"]


def without_route_patches(envoy_filter: dict) -> dict:
    envoy_filter = dict(envoy_filter, spec=dict(envoy_filter["spec"]))
    envoy_filter["spec"]["configPatches"] = [p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] != "HTTP_ROUTE"]
    return envoy_filter


def test_unlabelled_requests_are_refused_behind_istios_catch_all_route(services):
    """Defence in depth: the sidecar's filters on Istio's own catch-all route (as if the
    route patches were lost), a request the filter did not label is still refused, by
    the authz-service: 404 with -31014. (Needs the lead's authz-service change.)"""
    source = services.logs / "istio-sidecar-catch-all.yaml"
    source.write_text(yaml.safe_dump(apply(without_route_patches(sidecar_filter(services.logs))), sort_keys=False))
    deployed = start("istio-sidecar", services, source)
    try:
        for target in ["/MCP", "/mcp/", "/mcp;x", "/Mcp?x=1", "/mcp%3Bx", "/mcp."]:
            p = probe(deployed, services, target)
            assert not p.received, f"executed unlabelled: {p}"
            assert p.status == 404 and jsonrpc_error_code(p.response) == -31014, str(p)
        # The labelled path still works there.
        p = probe(deployed, services, "/mcp")
        assert p.status == 200 and len(p.received) == 1, str(p)
    finally:
        deployed.envoy.stop()
