"""Security wave 2, the filter's part, through real Envoy and the whole chain to the
official-SDK server: labels are bounded before any side call, arguments the audit hash
cannot represent are refused, and the audit record's request id is the gateway's own.

(Key case folding and message shapes are in test_differential.py against three server
stacks; session binding in test_authz_hardening.py.)
"""

from __future__ import annotations

import json
import re

import pytest
from harness import MCP_CLUSTER, audit_records, envoy_counter, request, start_gateway

from e2e.helpers import AGENT, META, MODERN, bearer

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
BIG = 900 * 1024  # under the 1 MiB body limit: refused for its label, not its size


@pytest.fixture
def gateway(logs, mcp_server, authz, ratelimit):
    port, seen = mcp_server
    envoy, listener = start_gateway(logs, {MCP_CLUSTER: port, **authz.upstreams(), **ratelimit.upstreams()})
    try:
        yield envoy, listener, seen
    finally:
        envoy.stop()


def post(listener: int, method: str, params: dict, rpc_id, auth: bool, name: str | None = None, extra=()):
    """A 2026-07-28 request with its mirrored headers, or (`name` None and no `_meta`)
    a handshake-era one, which has no mirrored headers to give a long label away."""
    modern = name is not None or method == "tools/list"
    meta = {"_meta": META} if modern else {}
    body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": {**params, **meta}})
    headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]
    if modern:
        headers += [("mcp-protocol-version", MODERN), ("mcp-method", method)]
    if name is not None:
        headers.append(("mcp-name", name))
    if auth:
        headers.append(bearer(AGENT))
    return request(listener, "POST", "/mcp", body, headers + list(extra))


def side_calls(envoy) -> tuple[int, int]:
    """gRPC requests Envoy sent to the authz and ratelimit services so far."""
    return (
        envoy_counter(envoy.admin_port, "cluster.authz_service.upstream_rq_total"),
        envoy_counter(envoy.admin_port, "cluster.ratelimit_service.upstream_rq_total"),
    )


# (case, method, params, status, JSON-RPC code, message fragment): handshake-era
# requests, whose labels come from the body alone.
OVERSIZED = [
    ("tool name", "tools/call", {"name": "t" * BIG, "arguments": {}}, 400, -32602, "tool name is 921600 characters long"),
    ("prompt name", "prompts/get", {"name": "p" * 129}, 400, -32602, "prompt name is 129 characters long"),
    ("method", "m" * BIG, {}, 400, -32600, "\"method\" is 921600 bytes long"),
    ("resource uri", "resources/read", {"uri": "file:///" + "u" * BIG}, 400, -32602, "\"params.uri\" is 921608 bytes long"),
]


@pytest.mark.parametrize("auth", [False, True], ids=["unauthenticated", "with-token"])
def test_oversized_labels_are_refused_before_any_side_call(gateway, auth):
    envoy, listener, seen = gateway
    before = side_calls(envoy)
    for case, method, params, status, code, fragment in OVERSIZED:
        response = post(listener, method, params, f"big-{case}", auth)
        assert response.status == status, (case, response.body[:300])
        error = response.json()["error"]
        assert error["code"] == code, case
        assert fragment in error["message"], (case, error["message"][:300])
        assert response.json()["id"] == f"big-{case}"
    # Neither service was asked, the server saw nothing.
    assert side_calls(envoy) == before
    assert seen.posts() == []
    ids = {f"big-{case}" for case, *_ in OVERSIZED}
    records = audit_records(envoy.audit_path, until=lambda rs: ids <= {r["jsonrpc_id"] for r in rs})
    refused = [r for r in records if r["jsonrpc_id"] in ids]
    assert len(refused) == len(OVERSIZED), records
    for record in refused:
        assert (record["decision"], record["http_status"]) == ("invalid", 400)
        # The record carries none of the oversized values: a short line.
        assert record["tool_name"] is None and record["prompt_name"] is None and record["resource_uri"] is None
        assert len(json.dumps(record)) < 2000


def test_arguments_without_a_faithful_hash_are_refused(gateway):
    envoy, listener, seen = gateway
    cases = {
        # Python reads 2^53 + 1 and 2^53 as different integers; a double cannot.
        "int-2^53+1": '{"account_id": 9007199254740993}',
        "int-2^70": '{"account_id": 1180591620717411303424}',
        "out-of-range": '{"account_id": 1e400}',
        "deep": '{"account_id": ' + "[" * 200 + "]" * 200 + "}",
    }
    for rpc_id, arguments in cases.items():
        body = (
            '{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"name":"get_account_balance",'
            '"arguments":%s,"_meta":%s}}' % (rpc_id, arguments, json.dumps(META))
        )
        headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_account_balance"),
            bearer(AGENT),
        ]
        response = request(listener, "POST", "/mcp", body, headers)
        assert response.status == 400, (rpc_id, response.body[:300])
        assert response.json()["error"]["code"] == -32602, rpc_id
        assert "params.arguments" in response.json()["error"]["message"]
    assert seen.dispatches() == []
    # 2^53 - 1 is exact everywhere: labelled, hashed and dispatched.
    response = post(
        listener, "tools/call", {"name": "get_account_balance", "arguments": {"account_id": 9007199254740991}},
        "safe", True, "get_account_balance",
    )
    assert response.status == 200, response.body[:300]
    records = audit_records(envoy.audit_path, until=lambda rs: any(r["jsonrpc_id"] == "safe" for r in rs))
    safe = next(r for r in records if r["jsonrpc_id"] == "safe")
    assert safe["input_hash"] and safe["input_hash"].startswith("sha256:")


def test_request_id_is_the_gateways_own(gateway):
    envoy, listener, _ = gateway
    forged = "11111111-2222-4333-8444-555555555555"
    for rpc_id in ("r1", "r2"):
        response = post(
            listener, "tools/list", {}, rpc_id, True, extra=[("x-request-id", forged)],
        )
        assert response.status == 200, response.body[:300]
    records = audit_records(envoy.audit_path, until=lambda rs: {"r1", "r2"} <= {r["jsonrpc_id"] for r in rs})
    ids = [r["request_id"] for r in records if r["jsonrpc_id"] in ("r1", "r2")]
    assert len(ids) == 2 and len(set(ids)) == 2
    for request_id in ids:
        assert UUID4.fullmatch(request_id) and request_id != forged
    # No trace context was sent: no trace id (it used to be the client's x-request-id).
    assert all(r["trace_id"] is None for r in records if r["jsonrpc_id"] in ("r1", "r2"))


def test_release_headers_from_the_client_never_reach_the_router_or_server(gateway):
    # A canary route picks its cluster by `x-mcp-version-pick` (set by the filter only,
    # for a pinned session) and tells the server its release in `x-mcp-server-version`
    # (set by the router): a client must neither choose its release nor claim one.
    envoy, listener, seen = gateway
    forged = [("x-mcp-version-pick", "99"), ("X-MCP-Version-Pick", "0"), ("x-mcp-server-version", "6.6.6")]
    response = post(listener, "tools/list", {}, "pick", True, extra=forged)
    assert response.status == 200, response.body[:300]
    records = seen.records()
    assert records, "the control request reached the server"
    headers = [(k.lower(), v) for k, v in records[-1]["headers"]]
    assert [v for k, v in headers if k == "x-mcp-version-pick"] == []
    assert "6.6.6" not in [v for k, v in headers if k == "x-mcp-server-version"]
    assert [v for k, v in headers if k == "x-mcp-server-id"] == ["financial-data"]
