"""Each header of the contract arrives upstream with the right value; forged copies never do."""

from __future__ import annotations

import json

import pytest
from harness import request

from harness import bearer

from e2e.helpers import AGENT, MODERN, echoed_headers, modern_call, session_reference, values

FORGED = [
    ("x-mcp-tool-name", "harmless_tool"),
    ("X-MCP-Method", "tools/list"),
    ("x-mcp-server-id", "other-server"),
    ("x-mcp-request-id", "999"),
    ("x-mcp-protocol-version", "2025-03-26"),
    ("x-mcp-prompt-name", "forged"),
    ("x-mcp-resource-uri", "file:///etc/passwd"),
    ("x-mcp-custom-anything", "forged"),
    ("x-agent-id", "admin-agent"),
    ("X-Agent-Id", "second-copy"),
    ("x-user-id", "ceo"),
]


def gateway_headers(headers):
    return [(k, v) for k, v in headers if k.startswith("x-mcp-") or k in ("x-agent-id", "x-user-id")]


def test_modern_tools_call_labels_and_strips_forgeries(echo_gateway):
    body, headers = modern_call("query_transactions", request_id="req-7")
    response = request(echo_gateway, "POST", "/mcp", body, headers + FORGED)
    assert response.status == 200, response.body
    seen = echoed_headers(response)
    assert gateway_headers(seen) == [
        ("x-mcp-method", "tools/call"),
        ("x-mcp-tool-name", "query_transactions"),
        ("x-mcp-protocol-version", MODERN),
        ("x-mcp-server-id", "financial-data"),
        ("x-mcp-request-id", '"req-7"'),
        # Set by the authz-service from the verified token, over the forged copies.
        ("x-agent-id", AGENT),
    ]
    # The client's token never reaches the upstream (MCP authorization spec).
    assert values(seen, "authorization") == []
    # The client's own MCP headers are kept; the body arrives unchanged.
    assert values(seen, "mcp-name") == ["query_transactions"]
    assert json.loads(response.body)["body"] == body


@pytest.mark.parametrize(
    "method, params, header, value",
    [
        ("prompts/get", {"name": "summarise_account"}, "x-mcp-prompt-name", "summarise_account"),
        ("resources/read", {"uri": "ledger://accounts"}, "x-mcp-resource-uri", "ledger://accounts"),
        ("resources/subscribe", {"uri": "ledger://accounts"}, "x-mcp-resource-uri", "ledger://accounts"),
    ],
)
def test_prompt_and_resource_labels(echo_gateway, method, params, header, value):
    body = {"jsonrpc": "2.0", "id": 3, "method": method, "params": params}
    response = request(
        echo_gateway, "POST", "/mcp", body,
        [("mcp-protocol-version", "2025-11-25"), bearer(AGENT, user="alice")] + FORGED,
    )
    assert response.status == 200, response.body
    seen = gateway_headers(echoed_headers(response))
    assert (header, value) in seen
    assert ("x-mcp-method", method) in seen
    assert ("x-mcp-protocol-version", "2025-11-25") in seen
    # A delegated token: agent and user both verified, each exactly once.
    assert [(k, v) for k, v in seen if k in ("x-agent-id", "x-user-id")] == [
        ("x-agent-id", AGENT),
        ("x-user-id", "alice"),
    ]


def test_non_ascii_tool_name_is_labelled_with_the_sentinel(echo_gateway):
    body, headers = modern_call("données", request_id=12345678901234567890)
    headers = [(k, "=?base64?ZG9ubsOpZXM=?=" if k == "mcp-name" else v) for k, v in headers]
    response = request(echo_gateway, "POST", "/mcp", body, headers)
    assert response.status == 200, response.body
    seen = dict(gateway_headers(echoed_headers(response)))
    assert seen["x-mcp-tool-name"] == "=?base64?ZG9ubsOpZXM=?="
    assert seen["x-mcp-request-id"] == "12345678901234567890"


def test_handshake_notification_has_no_request_id(echo_gateway):
    body = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    session = ("mcp-session-id", session_reference("s-1"))
    response = request(echo_gateway, "POST", "/mcp", body, [session, bearer()] + FORGED)
    assert response.status == 200
    assert gateway_headers(echoed_headers(response)) == [
        ("x-mcp-method", "notifications/initialized"),
        ("x-mcp-protocol-version", "2025-03-26"),
        ("x-mcp-server-id", "financial-data"),
        ("x-agent-id", AGENT),
    ]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_pass_through_with_forgeries_stripped(echo_gateway, method):
    response = request(
        echo_gateway, "GET" if method == "GET" else "DELETE", "/mcp", None,
        [("mcp-session-id", session_reference("s-1")), ("accept", "text/event-stream"), bearer()] + FORGED,
    )
    assert response.status == 200
    seen = echoed_headers(response)
    # Only the server label (no body to label), forged copies gone, the verified agent
    # set; the server gets its own session id back from the agent's reference.
    assert gateway_headers(seen) == [("x-mcp-server-id", "financial-data"), ("x-agent-id", AGENT)]
    assert values(seen, "mcp-session-id") == ["s-1"]
    assert json.loads(response.body)["method"] == method


def test_chunked_body_in_one_byte_pieces_is_labelled(echo_gateway):
    body, headers = modern_call("get_account_balance", request_id=5)
    response = request(
        echo_gateway, "POST", "/mcp", None, headers + FORGED,
        chunks=[bytes([b]) for b in body.encode()],
    )
    assert response.status == 200, response.body
    seen = dict(gateway_headers(echoed_headers(response)))
    assert seen["x-mcp-tool-name"] == "get_account_balance"
    assert seen["x-agent-id"] == AGENT


def test_body_at_the_limit_is_accepted(echo_gateway):
    body, headers = modern_call("query_transactions", arguments={"pad": ""})
    pad = 1024 * 1024 - len(body)
    body = body.replace('"pad": ""', '"pad": "' + "x" * pad + '"')
    assert len(body) == 1024 * 1024
    response = request(echo_gateway, "POST", "/mcp", body, headers)
    assert response.status == 200, response.body[:300]
    assert ("x-mcp-tool-name", "query_transactions") in echoed_headers(response)
