"""The authz-service's hardening through real Envoy (outside review findings):

1. a request the MCP filter did not label (a path other than its mcp_paths that still
   routes to the server, as Istio's catch-all route does) is refused with 404 and
   -31014 before its token is looked at, unless the route opts out;
2. a handshake-era session opens only for the agent it was issued to (needs the
   filter's half: wrapping the server's Mcp-Session-Id in an agent-bound reference);
3. identity headers reach the server in the MCP `=?base64?...?=` form whenever the
   value is not plain printable ASCII (or looks like that form itself).
"""

from __future__ import annotations

import base64
import json

import anyio
import pytest
from harness import MCP_CLUSTER, Authz, Ratelimit, audit_records, fallback_routes, request, start_gateway, token
from harness.authz import READ_SCOPES
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from e2e.helpers import echoed_headers, modern_call, values

OTHER = "/other"  # routed to the MCP server; not one of the filter's mcp_paths
OPEN = "/open"  # the same, on a route that opts out: mcp_unlabelled: allow
HANDSHAKE = "2025-11-25"
SESSION_NOT_FOUND = -31013
NOT_AN_MCP_ENDPOINT = -31014


def extra_routes(config: dict) -> None:
    """Envoy config mutation: two routes to the MCP server that the filter does not
    label, ahead of the catch-all 404."""
    routes = fallback_routes(config)
    at = next(i for i, route in enumerate(routes) if route["match"] == {"prefix": "/"})
    routes[at:at] = [
            {"name": "other", "match": {"path": OTHER}, "route": {"cluster": MCP_CLUSTER}},
            {
                "name": "open",
                "match": {"path": OPEN},
                "route": {"cluster": MCP_CLUSTER},
                "typed_per_filter_config": {
                    "envoy.filters.http.ext_authz": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                        "check_settings": {"context_extensions": {"mcp_unlabelled": "allow"}},
                    }
                },
            },
        ]


@pytest.fixture
def gateway(logs, mcp_server):
    """The whole chain in front of the demo MCP server, with the extra routes:
    yields (envoy, listener port, SeenLog)."""
    port, seen = mcp_server
    authz, ratelimit = Authz(logs), Ratelimit(logs)
    envoy, listener = start_gateway(
        logs, {MCP_CLUSTER: port, **authz.upstreams(), **ratelimit.upstreams()}, mutate=extra_routes
    )
    try:
        yield envoy, listener, seen
    finally:
        envoy.stop()
        ratelimit.stop()
        authz.stop()


def on_path(seen, path: str) -> list[dict]:
    return [r for r in seen.records() if r["path"] == path]


def test_unlabelled_requests_are_refused_unless_the_route_opts_out(gateway):
    envoy, port, seen = gateway
    body, headers = modern_call("get_account_balance", request_id="u-1", arguments={"account_id": "acc-001"})
    without_token = [h for h in headers if h[0] != "authorization"]
    # A client's own copy of the label is stripped by the filter on every path.
    forged = headers + [("x-mcp-server-id", "financial-data"), ("x-mcp-method", "tools/call")]
    attempts = [("POST", headers), ("POST", without_token), ("POST", forged), ("GET", headers), ("DELETE", headers)]
    for method, sent in attempts:
        response = request(port, method, OTHER, body if method == "POST" else None, sent)
        # 404 before the token: not a 401 challenge that invites the client to retry.
        assert response.status == 404, (method, response.status, response.body)
        assert response.header("content-type") == "application/json"
        assert response.header("www-authenticate") is None
        error = response.json()["error"]
        assert error["code"] == NOT_AN_MCP_ENDPOINT and error["message"].startswith("not an MCP endpoint"), error
    assert on_path(seen, OTHER) == [], "an unlabelled request reached the MCP server"

    # The MCP path itself is labelled and works.
    assert request(port, "POST", "/mcp", body, headers).status == 200

    # A route that opts out keeps the old rule: a valid token is needed, and enough.
    response = request(port, "POST", OPEN, body, without_token)
    assert response.status == 401 and response.json()["error"]["code"] == -31010
    assert on_path(seen, OPEN) == []
    request(port, "POST", OPEN, body, headers)
    reached = on_path(seen, OPEN)
    assert len(reached) == 1, reached
    forwarded = dict(reached[0]["headers"])
    assert forwarded["x-agent-id"] == "agent-under-test"
    assert "authorization" not in forwarded and "x-mcp-server-id" not in forwarded


def sentinel(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.fixture
def echo_chain(logs, echo, authz, ratelimit):
    """The shipped config with the header-echo upstream: yields (envoy, port)."""
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **authz.upstreams(), **ratelimit.upstreams()})
    yield envoy, port
    envoy.stop()


@pytest.mark.parametrize(
    "agent, user, wire_agent, wire_user",
    [
        # Non-ASCII and a header injection attempt: base64, nothing raw.
        ("agënt-ü\r\nx-agent-id: admin", "alice\t", sentinel("agënt-ü\r\nx-agent-id: admin"), sentinel("alice\t")),
        # A value that is itself the sentinel of "admin": encoded again, so that a
        # reader that decodes gets the claim as it is, never "admin".
        ("=?base64?YWRtaW4=?=", "bob", sentinel("=?base64?YWRtaW4=?="), "bob"),
    ],
    ids=["non-ascii-and-control", "looks-like-a-sentinel"],
)
def test_identity_headers_are_sent_in_the_sentinel_form(echo_chain, agent, user, wire_agent, wire_user):
    envoy, port = echo_chain
    body, headers = modern_call("get_account_balance", request_id="id-1", auth=False)
    bearer = ("authorization", f"Bearer {token(agent, READ_SCOPES, user=user)}")
    response = request(port, "POST", "/mcp", body, headers + [bearer])
    assert response.status == 200, response.body
    seen = echoed_headers(response)
    assert values(seen, "x-agent-id") == [wire_agent]
    assert values(seen, "x-user-id") == [wire_user]
    # The audit record decodes it back to the verified claim.
    records = audit_records(envoy.audit_path, 1)
    assert [(r["agent_id"], r["user_id"]) for r in records] == [(agent, user)], records


# ---- sessions (needs the filter's reference wrapping) ---------------------------


def legacy_client(url: str, agent: str, references: list[str]) -> Client:
    """A handshake-era SDK client for `agent`; every Mcp-Session-Id the gateway hands
    it is appended to `references`."""

    async def keep(response):
        if value := response.headers.get("mcp-session-id"):
            references.append(value)

    http = create_mcp_http_client(headers={"authorization": f"Bearer {token(agent)}"})
    http.event_hooks = {"response": [keep]}
    return Client(streamable_http_client(url, http_client=http), mode="legacy")


def server_session_id(reference: str) -> str:
    """The server's own id inside a reference (`mcp1.<base64url id>.<tag>`)."""
    encoded = reference.split(".")[1]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def stolen(port: int, method: str, agent: str, reference: str, request_id: str, copies: int = 1):
    """`method` on /mcp by `agent` with someone's session reference."""
    headers = [
        ("authorization", f"Bearer {token(agent)}"),
        ("mcp-protocol-version", HANDSHAKE),
        ("accept", "application/json, text/event-stream"),
    ] + [("mcp-session-id", reference)] * copies
    body = None
    if method == "POST":
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
             "params": {"name": "get_account_balance", "arguments": {"account_id": "acc-001"}}}
        )
        headers.append(("content-type", "application/json"))
    return request(port, method, "/mcp", body, headers)


def test_sessions_open_only_for_the_agent_that_started_them(gateway):
    envoy, port, seen = gateway
    url = f"http://127.0.0.1:{port}/mcp"
    references: list[str] = []
    refused = {}

    async def session():
        async with legacy_client(url, "agent-a", references) as client:
            # The gateway hands A a reference, not the server's id.
            assert references, "no Mcp-Session-Id reached the client"
            reference = references[0]
            assert reference.startswith("mcp1."), f"the filter did not wrap the session id: {reference!r}"
            await client.list_tools()
            before = len(seen.records())
            # Agent B replays A's reference: POST, the GET stream, DELETE; then A sends
            # its own reference twice (Envoy joins the copies with ",").
            for name, method, agent, copies in [
                ("b-post", "POST", "agent-b", 1),
                ("b-get", "GET", "agent-b", 1),
                ("b-delete", "DELETE", "agent-b", 1),
                ("a-twice", "POST", "agent-a", 2),
            ]:
                refused[name] = await anyio.to_thread.run_sync(stolen, port, method, agent, reference, name, copies)
            after = seen.records()[before:]
            # A's own session still works (B's DELETE never reached the server).
            result = await client.call_tool("get_account_balance", {"account_id": "acc-001"})
            return reference, after, result

    reference, during_b, result = anyio.run(session)

    # The server got its own id, never the reference.
    server_id = server_session_id(reference)
    assert server_id and server_id != reference
    posts = [dict(r["headers"]) for r in seen.records() if r["method"] == "POST"]
    in_session = [h for h in posts if h.get("x-mcp-method") == "tools/list"]
    assert in_session and all(h["mcp-session-id"] == server_id for h in in_session), in_session
    assert all(reference not in json.dumps(r) for r in seen.records()), "the reference reached the server"

    for name, response in refused.items():
        assert response.status == 404, (name, response.status, response.body)
        assert response.header("content-type") == "application/json", name
        error = response.json()["error"]
        assert error == {
            "code": SESSION_NOT_FOUND,
            "message": "session not found: this Mcp-Session-Id was not issued to the calling agent by this gateway",
        }, name
    # The server saw none of B's requests (A's GET stream may have come and gone).
    assert not any(dict(r["headers"]).get("x-agent-id") == "agent-b" for r in seen.records())
    assert not any(r["method"] == "DELETE" for r in during_b), during_b
    assert not result.is_error

    # Each refusal has its audit record, naming the agent that was refused.
    def complete(records):
        return sum(1 for r in records if r["http_status"] == 404) >= 4

    records = [r for r in audit_records(envoy.audit_path, until=complete, timeout=20) if r["http_status"] == 404]
    assert sorted((r["http_method"], r["agent_id"], r["decision"], r["error_code"]) for r in records) == [
        ("DELETE", "agent-b", "denied", SESSION_NOT_FOUND),
        ("GET", "agent-b", "denied", SESSION_NOT_FOUND),
        ("POST", "agent-a", "denied", SESSION_NOT_FOUND),
        ("POST", "agent-b", "denied", SESSION_NOT_FOUND),
    ], records
