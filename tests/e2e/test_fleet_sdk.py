"""The example fleet (registry/examples) as users run it: three MCP servers built with
the official SDKs (financial-data and hr-directory: Python; weather: TypeScript v1,
which speaks up to 2025-11-25) behind one Envoy rendered by `mcp-registry`, called
with the official Python SDK client. Each request is labelled, authorised, limited,
audited and metered under its own server id."""

from __future__ import annotations

import anyio
import pytest
from conftest import SeenLog

from e2e.helpers import AGENT, connect
from harness import audit_records, metric, prometheus_when, series, start_mcp_server
from harness.fleet import Fleet
from harness.servers import start_hr_directory, start_weather

SERVERS = ("financial-data", "hr-directory", "weather")
ALL_READ = " ".join(f"mcp.server.{s}:tools.read" for s in SERVERS)
# The SDK's default mode finds each server's revision: 2026-07-28 for the Python
# servers, 2025-11-25 (initialize, a session) for the TypeScript v1 one.
VERSIONS = {"financial-data": "2026-07-28", "hr-directory": "2026-07-28", "weather": "2025-11-25"}
CALLS = {
    "financial-data": ("get_account_balance", {"account_id": "acc-001"}),
    "hr-directory": ("find_employee", {"query": "Ada"}),
    "weather": ("get_forecast", {"city": "Oslo", "days": 2}),
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fleet-sdk")
    seen = {server: SeenLog(logs / f"seen-{server}.jsonl") for server in SERVERS}
    started = []
    try:
        started.append(start_mcp_server(logs, seen["financial-data"].path))
        started.append(start_hr_directory(logs, header_log=seen["hr-directory"].path))
        started.append(start_weather(logs, header_log=seen["weather"].path))
        ports = {server: port for server, (_, port) in zip(SERVERS, started)}
        running = Fleet(logs, ports)
    except Exception:
        for process, _ in started:
            process.stop()
        raise
    yield running, seen
    running.stop()
    for process, _ in started:
        process.stop()


def session(url: str, scopes: str, work):
    async def run():
        async with connect(url, mode="auto", scopes=scopes) as client:
            return client.protocol_version, await work(client)

    return anyio.run(run)


def test_each_server_is_served_labelled_audited_and_metered_under_its_own_id(fleet):
    running, seen = fleet
    for server in SERVERS:
        tool, arguments = CALLS[server]

        async def work(client, tool=tool, arguments=arguments):
            listed = await client.list_tools()
            result = await client.call_tool(tool, arguments)
            return {t.name for t in listed.tools}, result

        version, (names, result) = session(running.url(server), ALL_READ, work)
        assert version == VERSIONS[server], server
        assert tool in names, (server, names)
        assert not result.is_error, (server, result)
        # What reached the server: every POST labelled with its own id, the call named.
        posts = seen[server].posts()
        assert posts and all(p.get("x-mcp-server-id") == server for p in posts), (server, posts)
        assert any(p.get("x-mcp-tool-name") == tool for p in posts), server
        assert seen[server].dispatches()[-1] == tool

    records = audit_records(
        running.audit_path,
        until=lambda rs: {r["server_id"] for r in rs if r["method"] == "tools/call"} >= set(SERVERS),
    )
    calls = {r["server_id"]: r for r in records if r["method"] == "tools/call"}
    for server in SERVERS:
        record = calls[server]
        assert (record["tool_name"], record["decision"], record["output_status"]) == (CALLS[server][0], "allowed", "success")
        assert record["agent_id"] == AGENT
    assert calls["weather"]["server_version"] == "2.0.1"
    assert {s: calls[s]["protocol_version"] for s in SERVERS} == VERSIONS

    samples = prometheus_when(
        running.envoy.admin_port,
        lambda s: all(metric(s, "mcp_tool_calls_total", mcp_server=sv, mcp_tool=CALLS[sv][0], mcp_outcome="success") for sv in SERVERS),
    )
    for server in SERVERS:
        tool = CALLS[server][0]
        assert metric(samples, "mcp_tool_calls_total", mcp_server=server, mcp_tool=tool, mcp_outcome="success") == 1
    # No server's tool is counted under another server.
    labelled = {(s["mcp_server"], s["mcp_tool"]) for s in series(samples, "mcp_tool_calls_total")}
    assert labelled == {(server, CALLS[server][0]) for server in SERVERS}


def test_per_server_scopes_hold(fleet):
    running, _ = fleet

    async def org_chart(client):
        return await client.call_tool("get_org_chart", {"employee_id": "e-110"})

    # hr-directory's manifest asks mcp.server.hr-directory:org.read for get_org_chart.
    with pytest.raises(Exception) as refused:
        session(running.url("hr-directory"), ALL_READ, org_chart)
    # The gateway's 403 body, as the SDK reports it.
    assert "MCPError(-31011, 'insufficient scope: missing mcp.server.hr-directory:org.read'" in repr(refused.value)
    _, result = session(running.url("hr-directory"), ALL_READ + " mcp.server.hr-directory:org.read", org_chart)
    assert not result.is_error
    # A token for one server does not open another.
    with pytest.raises(Exception) as refused:
        session(running.url("financial-data"), "mcp.server.weather:tools.read", lambda c: c.list_tools())
    assert "MCPError(-31011, 'insufficient scope: missing mcp.server.financial-data:tools.read'" in repr(refused.value)


def test_per_server_limits_hold(fleet):
    """weather's manifest: get_alerts 5 per second per agent. Twelve calls in well under
    a second meet at most two windows: at most ten pass, and the rest get 429, while
    the same agent's calls of another server are not limited by it."""
    running, _ = fleet

    async def alerts(client):
        outcomes = []
        for _ in range(12):
            try:
                await client.call_tool("get_alerts", {"region": "NO"})
                outcomes.append("ok")
            except Exception as error:  # the SDK raises on an HTTP error status
                outcomes.append(repr(error))
        other = await client_call_elsewhere()
        return outcomes, other

    async def client_call_elsewhere():
        async with connect(running.url("financial-data"), scopes=ALL_READ) as other:
            return await other.call_tool("get_account_balance", {"account_id": "acc-002"})

    _, (outcomes, other) = session(running.url("weather"), ALL_READ, alerts)
    passed = outcomes.count("ok")
    assert 5 <= passed <= 10, outcomes
    assert all(o.startswith("MCPError(-31020, 'rate limited") for o in outcomes if o != "ok"), outcomes
    assert not other.is_error
    records = audit_records(
        running.audit_path,
        until=lambda rs: sum(r["decision"] == "rate_limited" for r in rs) >= 12 - passed,
    )
    limited = [r for r in records if r["decision"] == "rate_limited"]
    assert len(limited) == 12 - passed
    assert all(r["server_id"] == "weather" and r["tool_name"] == "get_alerts" and r["error_code"] == -31020 for r in limited)
