"""Every refusal through real Envoy: documented status, JSON-RPC error body, request id."""

from __future__ import annotations

import json

import pytest
from harness import request

from e2e.helpers import META, modern_call

LIMIT = 1024 * 1024  # max_body_bytes in envoy/fleet.yaml


def call_body(tool="get_account_balance", request_id=41, meta=True):
    params = {"name": tool, "arguments": {}}
    if meta:
        params["_meta"] = META
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


_, MIRRORED = modern_call("get_account_balance")


def with_header(name, value):
    return [(k, value if k == name else v) for k, v in MIRRORED]


def without(name):
    return [(k, v) for k, v in MIRRORED if k != name]


CASES = [
    # (case, body, headers, status, code, id)
    ("not JSON", "{not json", [], 400, -32700, None),
    ("empty body", "", [], 400, -32700, None),
    ("batch array", '[{"jsonrpc":"2.0","id":1,"method":"ping"}]', [], 400, -32600, None),
    ("no method", '{"jsonrpc":"2.0","id":7}', [], 400, -32600, 7),
    ("method not a string", '{"jsonrpc":"2.0","id":7,"method":["tools/call"]}', [], 400, -32600, 7),
    ("jsonrpc 1.0", '{"jsonrpc":"1.0","id":"a","method":"ping"}', [], 400, -32600, "a"),
    ("duplicate method", '{"jsonrpc":"2.0","id":8,"method":"ping","method":"tools/call","params":{"name":"x"}}', [], 400, -32600, 8),
    ("duplicate tool name", '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a","name":"b"}}', [], 400, -32600, 9),
    ("tool name not a string", '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":{"x":1}}}', [], 400, -32602, 9),
    ("Mcp-Name disagrees with body", call_body("delete_everything"), MIRRORED, 400, -32020, 41),
    ("missing Mcp-Name", call_body(), without("mcp-name"), 400, -32020, 41),
    ("missing Mcp-Method", call_body(), without("mcp-method"), 400, -32020, 41),
    ("Mcp-Method disagrees", call_body(), with_header("mcp-method", "tools/list"), 400, -32020, 41),
    ("version header disagrees with _meta", call_body(), with_header("mcp-protocol-version", "2025-11-25"), 400, -32020, 41),
    ("_meta claims 2026-07-28 without headers", call_body(), [], 400, -32020, 41),
    ("modern header without _meta", call_body(meta=False), MIRRORED, 400, -32602, 41),
]


@pytest.mark.parametrize("case, body, headers, status, code, request_id", CASES, ids=[c[0] for c in CASES])
def test_refusals(echo_gateway, case, body, headers, status, code, request_id):
    response = request(echo_gateway, "POST", "/mcp", body, headers)
    assert response.status == status, response.body
    assert response.header("content-type") == "application/json"
    error = response.json()
    assert error["jsonrpc"] == "2.0"
    assert error["id"] == request_id
    assert error["error"]["code"] == code
    assert error["error"]["message"]
    # Refused by the filter: the echo upstream would have answered 200 with its echo.
    assert "upstream" not in error


def test_body_over_the_limit_with_content_length(echo_gateway):
    body, headers = modern_call("query_transactions", arguments={"pad": "x" * LIMIT})
    response = request(echo_gateway, "POST", "/mcp", body, headers)
    assert response.status == 413
    assert response.json()["error"]["code"] == -31001
    assert str(LIMIT) in response.json()["error"]["message"]


def test_body_of_limit_plus_one_streamed_without_content_length(echo_gateway):
    body, headers = modern_call("query_transactions", arguments={"pad": ""})
    body = body.replace('"pad": ""', '"pad": "' + "x" * (LIMIT + 1 - len(body)) + '"')
    assert len(body) == LIMIT + 1
    raw = body.encode()
    chunks = [raw[i : i + 65536] for i in range(0, len(raw), 65536)]
    response = request(echo_gateway, "POST", "/mcp", None, headers, chunks=chunks)
    assert response.status == 413
    assert response.json()["error"]["code"] == -31001


def test_compressed_body_is_refused(echo_gateway):
    body, headers = modern_call("query_transactions")
    response = request(echo_gateway, "POST", "/mcp", body, headers + [("content-encoding", "gzip")])
    assert response.status == 415
    assert response.json()["error"]["code"] == -31002


def test_other_http_methods_are_refused(echo_gateway):
    response = request(echo_gateway, "PUT", "/mcp", "{}", [])
    assert response.status == 405
    assert response.header("allow") == "GET, POST, DELETE, OPTIONS"
    assert response.json()["error"]["code"] == -31003


def test_other_paths_never_reach_the_mcp_server(echo_gateway):
    # Path tricks normalise to /mcp (and get labelled) or are refused; nothing reaches
    # the MCP server unlabelled.
    body, headers = modern_call("get_account_balance")
    for path in ["//mcp", "/./mcp", "/x/../mcp"]:
        response = request(echo_gateway, "POST", path, body, headers)
        assert response.status == 200, (path, response.body)
        assert ("x-mcp-tool-name", "get_account_balance") in [tuple(h) for h in response.json()["headers"]]
    for path in ["/mcp/", "/MCP", "/mcp%2F", "/other"]:
        response = request(echo_gateway, "POST", path, body, headers)
        assert response.status in (400, 404), (path, response.status)
        assert b"upstream" not in response.body
