"""The audit record and the metrics, end to end: real Envoy with the whole chain
(filter, ext_authz -> authz-service, ratelimit -> ratelimit-service) in front of the
official-SDK demo server. Every request of a scripted scenario must produce exactly
one record with the expected fields, and Envoy's /stats/prometheus the same counts."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time

import anyio
import pytest
import yaml
from e2e.helpers import AGENT, META, connect, route_timeout
from e2e.test_monitoring import queried_metrics
from harness import (
    MCP_CLUSTER,
    Authz,
    Ratelimit,
    audit_records,
    bearer,
    metric,
    prometheus_when,
    request,
    series,
    start_gateway,
)
from harness.single import limits_config

LOOPING = "looping-agent"
MISSING = "ledger://archive/1999"
ROUTE_TIMEOUT_S = 2


@pytest.fixture
def audited_gateway(logs, mcp_server):
    """The one-server gateway (harness/single.py), with a route timeout (to provoke an upstream timeout)
    and a limit of one call per minute for LOOPING."""
    port, _ = mcp_server
    limits_path = logs / "audit-limits.yaml"
    limits_path.write_text(
        yaml.safe_dump(
            limits_config(
                [
                    {
                        "key": "tool_call",
                        "descriptors": [
                            {"key": "agent_id", "value": LOOPING, "rate_limit": {"unit": "minute", "requests_per_unit": 1}}
                        ],
                    }
                ]
            )
        )
    )

    authz = Authz(logs)
    ratelimit = Ratelimit(logs, config=limits_path)
    envoy, listener = start_gateway(
        logs, {MCP_CLUSTER: port, **authz.upstreams(), **ratelimit.upstreams()}, mutate=route_timeout(ROUTE_TIMEOUT_S)
    )
    try:
        yield envoy, listener
    finally:
        envoy.stop()
        ratelimit.stop()
        authz.stop()


UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def call(request_id: str, tool: str, arguments: dict, progress: bool = False) -> str:
    meta = dict(META)
    if progress:
        meta["progressToken"] = request_id
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta},
        }
    )


def read_resource(request_id: str, uri: str) -> str:
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "resources/read", "params": {"uri": uri, "_meta": META}}
    )


def headers_for(name: str, auth: tuple[str, str] | None, method: str = "tools/call") -> list[tuple[str, str]]:
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
        ("mcp-name", name),
    ]
    return headers + ([auth] if auth else [])


def input_hash(arguments: dict) -> str:
    """RFC 8785 for these plain ASCII arguments is sorted keys, no spaces."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def post(port: int, body: str, headers, timeout: float = 15):
    """Sends one call; the status, or None when the stream was cut."""
    try:
        return request(port, "POST", "/mcp", body, headers, timeout=timeout).status
    except (http.client.HTTPException, ConnectionError):
        return None


def read_first_event_then_leave(port: int, body: str, headers) -> bytes:
    """Starts an SSE call, reads its first event and closes the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("POST", "/mcp", body.encode(), dict(headers))
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    seen = b""
    while b"\n\n" not in seen.replace(b"\r\n", b"\n"):
        seen += response.read1(1024)
    conn.sock.close()
    conn.close()
    return seen


def test_every_request_gets_exactly_its_record_and_metrics(audited_gateway):
    envoy, port = audited_gateway
    reader = bearer(AGENT)
    ok_args = {"account_id": "acc-001"}

    started = time.monotonic()
    statuses = {
        "success": post(port, call("success", "get_account_balance", ok_args), headers_for("get_account_balance", reader)),
        "tool-error": post(port, call("tool-error", "get_account_balance", {"account_id": "nope"}), headers_for("get_account_balance", reader)),
        "rpc-error": post(port, read_resource("rpc-error", MISSING), headers_for(MISSING, reader, "resources/read")),
        "unauthorized": post(port, call("unauthorized", "query_transactions", ok_args), headers_for("query_transactions", None)),
        "forbidden": post(port, call("forbidden", "transfer_funds", {"from_account": "acc-001", "to_account": "acc-002", "amount": 5}), headers_for("transfer_funds", reader)),
        "first-of-loop": post(port, call("first-of-loop", "query_transactions", ok_args), headers_for("query_transactions", bearer(LOOPING))),
        "rate-limited": post(port, call("rate-limited", "query_transactions", ok_args), headers_for("query_transactions", bearer(LOOPING))),
        "invalid": post(port, '{"jsonrpc":"2.0","id":"invalid","method":', headers_for("get_account_balance", reader)),
        "timeout": post(port, call("timeout", "generate_report", {"account_id": "acc-001", "months": 4}), headers_for("generate_report", reader)),
        "streamed": post(port, call("streamed", "export_statement", ok_args, progress=True), headers_for("export_statement", reader)),
    }
    first = read_first_event_then_leave(port, call("left", "export_statement", ok_args, progress=True), headers_for("export_statement", reader))
    assert b"notifications/progress" in first
    assert statuses == {
        "success": 200,
        "tool-error": 200,
        # The SDK server answers a JSON-RPC error with HTTP 400.
        "rpc-error": 400,
        "unauthorized": 401,
        "forbidden": 403,
        "first-of-loop": 200,
        "rate-limited": 429,
        "invalid": 400,
        # The SDK answers with SSE, so the response has started when the route timeout
        # fires: Envoy cuts the stream (a 504 if it had not started).
        "timeout": statuses["timeout"] if statuses["timeout"] in (None, 504) else "unexpected",
        "streamed": 200,
    }

    sent = len(statuses) + 1
    records = audit_records(envoy.audit_path, sent, timeout=20)
    # Every request began and ended within this window: no latency can be longer.
    window_ms = (time.monotonic() - started) * 1000
    # Nothing more arrives later: exactly one record per request. The positive signal
    # is a marker request sent after every other one ended: with one worker
    # (--concurrency 1), records are written in the order the requests end, so once
    # the marker's record is there, any second record of an earlier request would be.
    assert post(port, call("marker", "get_account_balance", ok_args), headers_for("get_account_balance", reader)) == 200
    records = audit_records(envoy.audit_path, sent + 1, timeout=20,
                            until=lambda rs: any(r["jsonrpc_id"] == "marker" for r in rs))
    assert records[-1]["jsonrpc_id"] == "marker", records[-1]
    records = records[:-1]
    by_id = {r["jsonrpc_id"]: r for r in records}
    assert len(records) == sent and len(by_id) == sent, records

    def fields(request_id, *names):
        return tuple(by_id[request_id][n] for n in names)

    shape = ("decision", "output_status", "http_status", "error_code", "agent_id", "tool_name")
    assert fields("success", *shape) == ("allowed", "success", 200, None, AGENT, "get_account_balance")
    assert fields("tool-error", *shape) == ("allowed", "error", 200, None, AGENT, "get_account_balance")
    # MCP 2026-07-28 "Resources: Error Handling": unknown resource is -32602.
    assert fields("rpc-error", *shape) == ("allowed", "error", 400, -32602, AGENT, None)
    assert fields("rpc-error", "method", "resource_uri") == ("resources/read", MISSING)
    assert fields("unauthorized", *shape) == ("denied", "error", 401, -31010, None, "query_transactions")
    assert fields("forbidden", *shape) == ("denied", "error", 403, -31011, AGENT, "transfer_funds")
    assert fields("first-of-loop", *shape) == ("allowed", "success", 200, None, LOOPING, "query_transactions")
    assert fields("rate-limited", *shape) == ("rate_limited", "error", 429, -31020, LOOPING, "query_transactions")
    # A body that does not parse has no id to record.
    assert fields(None, *shape) == ("invalid", "error", 400, -32700, None, None)
    assert fields("timeout", "decision", "output_status", "agent_id") == ("allowed", "timeout", AGENT)
    assert by_id["timeout"]["latency_ms"] >= ROUTE_TIMEOUT_S * 1000 * 0.9
    assert fields("streamed", *shape) == ("allowed", "success", 200, None, AGENT, "export_statement")
    assert fields("left", "decision", "output_status", "http_status") == ("allowed", "partial", 200)

    for record in records:
        assert record["server_id"] == "financial-data"
        assert record["timestamp"].endswith("Z") and "T" in record["timestamp"]
        # Measured, not a default: even a request refused at once spends microseconds
        # in Envoy (microsecond resolution), and none outlasts the test's own window.
        assert 0 < record["latency_ms"] < window_ms, (record["jsonrpc_id"], record["latency_ms"], window_ms)
        assert record["http_method"] == "POST"
        # The gateway's own id (UUID v4), not Envoy's or a client's x-request-id; these
        # calls carry no trace context, so there is no trace id.
        assert UUID4.fullmatch(record["request_id"]), record["request_id"]
        assert record["trace_id"] is None
        # Raw arguments never reach the log.
        assert "acc-001" not in json.dumps(record)
    assert len({r["request_id"] for r in records}) == len(records)
    assert by_id["success"]["input_hash"] == input_hash(ok_args)
    assert by_id["success"]["input_hash"] == by_id["first-of-loop"]["input_hash"] == by_id["streamed"]["input_hash"]
    assert by_id["tool-error"]["input_hash"] == input_hash({"account_id": "nope"})
    assert by_id[None]["input_hash"] is None
    assert by_id["success"]["protocol_version"] == "2026-07-28"
    assert by_id["success"]["method"] == "tools/call"

    samples = prometheus_when(
        envoy.admin_port, lambda s: metric(s, "mcp_tool_call_duration_ms_count", mcp_server="financial-data", mcp_tool="generate_report")
    )
    calls = "mcp_tool_calls_total"
    server = {"mcp_server": "financial-data"}
    expected_calls = {
        # "success" and the marker.
        ("get_account_balance", "success"): 2,
        ("get_account_balance", "error"): 1,
        ("query_transactions", "denied"): 1,
        ("transfer_funds", "denied"): 1,
        ("query_transactions", "success"): 1,
        ("query_transactions", "rate_limited"): 1,
        ("generate_report", "timeout"): 1,
        ("export_statement", "success"): 1,
        ("export_statement", "partial"): 1,
    }
    for (tool, outcome), count in expected_calls.items():
        assert metric(samples, calls, **server, mcp_tool=tool, mcp_outcome=outcome) == count, (tool, outcome)
    assert len(series(samples, calls)) == len(expected_calls)
    assert metric(samples, "mcp_requests_total", **server, mcp_method="invalid", mcp_decision="invalid") == 1
    assert metric(samples, "mcp_requests_total", **server, mcp_method="tools/call", mcp_decision="allowed") == 7
    assert metric(samples, "mcp_requests_total", **server, mcp_method="resources/read", mcp_decision="allowed") == 1
    # Latency per tool for the calls that reached the server.
    assert metric(samples, "mcp_tool_call_duration_ms_count", **server, mcp_tool="generate_report") == 1
    assert metric(samples, "mcp_tool_call_duration_ms_sum", **server, mcp_tool="generate_report") >= ROUTE_TIMEOUT_S * 1000 * 0.9
    assert metric(samples, "mcp_tool_call_duration_ms_count", **server, mcp_tool="transfer_funds") == 0


def test_traceparent_is_recorded_and_forwarded(mcp_gateway, logs):
    url, seen = mcp_gateway
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    header = f"00-{trace}-00f067aa0ba902b7-01"
    body = call("traced", "get_account_balance", {"account_id": "acc-001"})
    assert post(port, body, headers_for("get_account_balance", bearer(AGENT)) + [("traceparent", header)]) == 200
    # Without the header, params._meta.traceparent is used.
    meta_trace = "0af7651916cd43dd8448eb211c80319c"
    payload = json.loads(call("meta-traced", "get_account_balance", {"account_id": "acc-001"}))
    payload["params"]["_meta"]["traceparent"] = f"00-{meta_trace}-b7ad6b7169203331-01"
    assert post(port, json.dumps(payload), headers_for("get_account_balance", bearer(AGENT))) == 200
    path = next(logs.glob("audit-*.jsonl"))
    records = {r["jsonrpc_id"]: r for r in audit_records(path, 2)}
    assert records["traced"]["trace_id"] == trace
    assert records["meta-traced"]["trace_id"] == meta_trace
    # The trace context keeps flowing to the MCP server.
    forwarded = [r for r in seen.records() if r["method"] == "POST"]
    assert any(["traceparent", header] in r["headers"] for r in forwarded), forwarded


def test_handshake_sessions_and_negotiation_failures(audited_gateway):
    envoy, port = audited_gateway
    url = f"http://127.0.0.1:{port}/mcp"

    async def session():
        async with connect(url, mode="legacy") as client:
            await client.call_tool("get_account_balance", {"account_id": "acc-001"})
            await client.call_tool("query_transactions", {"account_id": "acc-001"})

    anyio.run(session)
    # An initialize the server refuses (no protocolVersion): a negotiation failure.
    bad_init = json.dumps({"jsonrpc": "2.0", "id": "bad-init", "method": "initialize", "params": {}})
    headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream"), bearer(AGENT)]
    request(port, "POST", "/mcp", bad_init, headers)

    # Records arrive when each request ends: wait for the last ones of each kind
    # (the GET stream ends with the session, the refused initialize comes last).
    def complete(records):
        return {"bad-init"} <= {r["jsonrpc_id"] for r in records} and {"DELETE", "GET"} <= {
            r["http_method"] for r in records
        }

    records = audit_records(envoy.audit_path, 7, timeout=20, until=complete)
    init = [r for r in records if r["method"] == "initialize" and r["decision"] == "allowed"]
    good = [r for r in init if r["output_status"] == "success"]
    assert len(good) == 1 and good[0]["session_id"], records
    session_id = good[0]["session_id"]
    # A hash of the agent-bound session reference, never the bearer value itself.
    assert re.fullmatch(r"sha256:[0-9a-f]{32}", session_id), session_id
    in_session = [r for r in records if r["session_id"] == session_id]
    assert {r["tool_name"] for r in in_session if r["tool_name"]} == {"get_account_balance", "query_transactions"}
    assert any(r["http_method"] == "DELETE" for r in in_session)
    assert any(r["jsonrpc_id"] == "bad-init" and r["output_status"] == "error" for r in init)

    samples = prometheus_when(
        envoy.admin_port, lambda s: metric(s, "mcp_session_duration_ms_count", mcp_server="financial-data")
    )
    server = {"mcp_server": "financial-data"}
    assert metric(samples, "mcp_sessions_total", **server, mcp_event="started") == 1
    assert metric(samples, "mcp_sessions_total", **server, mcp_event="ended") == 1
    assert metric(samples, "mcp_session_tool_calls_count", **server) == 1
    # Two calls: in the (1, 5] bucket (Envoy's histogram sums are approximate).
    assert metric(samples, "mcp_session_tool_calls_bucket", **server, le="1") == 0
    assert metric(samples, "mcp_session_tool_calls_bucket", **server, le="5") == 1
    assert metric(samples, "mcp_session_duration_ms_count", **server) == 1
    assert metric(samples, "mcp_negotiation_failures_total", **server, mcp_kind="initialize") == 1

    # The shipped alert rules and dashboard query only metrics Envoy really exports.
    exported = {name for (name, _) in samples}
    assert queried_metrics() <= exported, queried_metrics() - exported
