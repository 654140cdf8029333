"""Header names with underscores never reach an MCP server, on any shipped deployment.

CGI-style servers (WSGI, Rack, PHP's $_SERVER) read header names with `-` and `_`
alike: `x_agent_id: admin` becomes HTTP_X_AGENT_ID, the same variable as the verified
`x-agent-id` the gateway sets. Envoy passes such names on by default; every shipped
connection manager refuses them (`headers_with_underscores_action: REJECT_REQUEST`):
HTTP/1.1 gets 400 with a JSON-RPC error (a local reply mapper), HTTP/2 a reset stream
(Envoy refuses there without an HTTP answer). Nothing reaches the upstream.
"""

from __future__ import annotations

import json

import pytest

from e2e.deployments import deployment, probe, services  # noqa: F401 (fixtures)

UNDERSCORED = [("x_agent_id", "admin"), ("x-agent_id", "admin"), ("X_Mcp_Tool_Name", "transfer_funds"), ("x_forwarded_client_cert", "By=spiffe://x")]


def test_the_control_request_reaches_the_server(deployment, services):
    # Without underscores the very same request is executed, so "nothing arrived"
    # below means refused, not lost.
    for protocol in ("http/1.1", "h2"):
        p = probe(deployment, services, "/mcp", protocol)
        assert p.status == 200 and len(p.received) == 1 and p.received[0]["executed"], str(p)


@pytest.mark.parametrize("name, value", UNDERSCORED, ids=[n for n, _ in UNDERSCORED])
def test_underscored_header_names_are_refused_over_http1(deployment, services, name, value):
    before = deployment.counter("http1.requests_rejected_with_underscores_in_headers")
    p = probe(deployment, services, "/mcp", "http/1.1", extra=[(name, value)])
    assert not p.received, f"reached the server: {p}"
    assert p.status == 400, str(p)
    assert p.response.header("content-type") == "application/json"
    error = json.loads(p.response.body)
    assert error["jsonrpc"] == "2.0" and error["id"] is None
    assert error["error"]["code"] == -31004 and "underscore" in error["error"]["message"]
    assert deployment.counter("http1.requests_rejected_with_underscores_in_headers") == before + 1


@pytest.mark.parametrize("name, value", UNDERSCORED, ids=[n for n, _ in UNDERSCORED])
def test_underscored_header_names_are_refused_over_http2(deployment, services, name, value):
    before = deployment.counter("http2.requests_rejected_with_underscores_in_headers")
    p = probe(deployment, services, "/mcp", "h2", extra=[(name, value)])
    assert not p.received, f"reached the server: {p}"
    # Envoy resets the stream (no response) rather than answering 400.
    assert p.response is None, str(p)
    assert deployment.counter("http2.requests_rejected_with_underscores_in_headers") == before + 1
