"""Request builders shared by the end-to-end tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from harness import bearer, connection_manager, routes, token
from harness.authz import READ_SCOPES, session_key
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

AGENT = "agent-under-test"

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def session_reference(session_id: str, agent: str = AGENT, server: str = "financial-data") -> str:
    """The Mcp-Session-Id the gateway gives `agent` for the server's `session_id`,
    computed here independently of the Rust code (filter/core/src/session_ref.rs):
    mcp1.<b64url(id)>.<b64url(HMAC(HMAC(master, label 0 server 0 agent), id)[:16])>."""
    binding = hmac.new(
        session_key().encode(), b"mcp-session-binding/v1\0" + server.encode() + b"\0" + agent.encode(), hashlib.sha256
    ).digest()
    tag = hmac.new(binding, session_id.encode(), hashlib.sha256).digest()[:16]

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"mcp1.{b64(session_id.encode())}.{b64(tag)}"


def modern_call(tool: str, request_id=1, arguments=None, auth=True) -> tuple[str, list[tuple[str, str]]]:
    """A 2026-07-28 tools/call body and the mirrored headers a compliant client sends
    (with a bearer token for AGENT unless `auth` is false)."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments or {}, "_meta": META},
        }
    )
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ]
    if auth:
        headers.append(bearer(AGENT))
    return body, headers


def echoed_headers(response) -> list[tuple[str, str]]:
    """Headers the echo upstream received, in order, repeats kept."""
    return [tuple(pair) for pair in json.loads(response.body)["headers"]]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


def connect(url: str, mode: str = "2026-07-28", agent: str = AGENT, scopes: str = READ_SCOPES, **claims) -> Client:
    """An official-SDK client that sends a bearer token for `agent`."""
    headers = {"authorization": f"Bearer {token(agent, scopes, **claims)}"}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, mode=mode)


def route_timeout(seconds: float):
    """Envoy config mutation: an overall timeout on the /mcp route (the shipped config
    has none, for long SSE answers), to provoke upstream timeouts."""

    def mutate(config: dict) -> None:
        found = routes(config, "/mcp")
        assert found, "no /mcp route"
        for route in found:
            route["route"]["timeout"] = f"{seconds}s"

    return mutate


def ratelimit_failure_mode_deny(config: dict) -> None:
    """Envoy config mutation: the rate limit filter refuses when its service fails."""
    hcm = connection_manager(config)
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.ratelimit":
            f["typed_config"]["failure_mode_deny"] = True
