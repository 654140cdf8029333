"""The official MCP Python SDK, as client and server, through Envoy with the filter."""

from __future__ import annotations

import json

import anyio
import mcp.client.session

from e2e.helpers import connect


def run(coro_fn):
    return anyio.run(coro_fn)


def test_modern_client_lists_and_calls_tools(mcp_gateway):
    url, seen = mcp_gateway

    async def session():
        async with connect(url) as client:
            tools = await client.list_tools()
            balance = await client.call_tool("get_account_balance", {"account_id": "acc-001"})
            return client.protocol_version, tools, balance

    version, tools, balance = run(session)
    assert version == "2026-07-28"
    assert {"get_account_balance", "query_transactions"} <= {t.name for t in tools.tools}
    assert not balance.is_error
    assert json.loads(balance.content[0].text)["balance"] == 1520.75

    posts = seen.posts()
    listing = next(h for h in posts if h.get("x-mcp-method") == "tools/list")
    call = next(h for h in posts if h.get("x-mcp-method") == "tools/call")
    assert listing["x-mcp-protocol-version"] == "2026-07-28"
    assert "x-mcp-tool-name" not in listing
    assert call["x-mcp-tool-name"] == "get_account_balance"
    assert call["x-mcp-server-id"] == "financial-data"
    assert call["x-mcp-protocol-version"] == "2026-07-28"
    # The client's own mirrored headers are validated and kept.
    assert call["mcp-name"] == "get_account_balance"
    assert call["mcp-method"] == "tools/call"
    # Every POST the server saw was labelled.
    assert posts and all("x-mcp-method" in h and "x-mcp-server-id" in h for h in posts)


def test_modern_client_reads_resources_and_prompts(mcp_gateway):
    url, seen = mcp_gateway

    async def session():
        async with connect(url) as client:
            resource = await client.read_resource("ledger://accounts")
            prompt = await client.get_prompt("summarise_account", {"account_id": "acc-002"})
            return resource, prompt

    resource, prompt = run(session)
    assert "acc-001" in resource.contents[0].text
    assert "acc-002" in prompt.messages[0].content.text
    posts = seen.posts()
    read = next(h for h in posts if h.get("x-mcp-method") == "resources/read")
    get = next(h for h in posts if h.get("x-mcp-method") == "prompts/get")
    assert read["x-mcp-resource-uri"] == "ledger://accounts"
    assert get["x-mcp-prompt-name"] == "summarise_account"


def test_auto_mode_client_discovers_through_envoy(mcp_gateway):
    """The SDK's default mode probes with server/discover first."""
    url, seen = mcp_gateway

    async def session():
        async with connect(url, mode="auto") as client:
            result = await client.call_tool("query_transactions", {"account_id": "acc-002"})
            return client.protocol_version, result

    version, result = run(session)
    assert version == "2026-07-28"
    assert not result.is_error
    methods = [h.get("x-mcp-method") for h in seen.posts()]
    assert "server/discover" in methods and "tools/call" in methods


def test_handshake_era_session(mcp_gateway, monkeypatch):
    """initialize, Mcp-Session-Id, the GET stream and DELETE all work through Envoy."""
    url, seen = mcp_gateway
    # The SDK offers its newest handshake revision; pin an older one to cover it too.
    monkeypatch.setattr(mcp.client.session, "LATEST_HANDSHAKE_VERSION", "2025-06-18")

    async def session():
        async with connect(url, mode="legacy") as client:
            tools = await client.list_tools()
            result = await client.call_tool("query_transactions", {"account_id": "acc-001", "limit": 1})
            # Give the client's background GET stream time to open.
            await anyio.sleep(0.5)
            return client.protocol_version, tools, result

    version, tools, result = run(session)
    assert version == "2025-06-18"
    assert "query_transactions" in {t.name for t in tools.tools}
    assert not result.is_error

    records = seen.records()
    posts = [dict(r["headers"]) for r in records if r["method"] == "POST"]
    initialize = next(h for h in posts if h.get("x-mcp-method") == "initialize")
    assert initialize["x-mcp-protocol-version"] == "2025-06-18"
    assert "mcp-session-id" not in initialize
    call = next(h for h in posts if h.get("x-mcp-method") == "tools/call")
    assert call["x-mcp-tool-name"] == "query_transactions"
    assert call["x-mcp-protocol-version"] == "2025-06-18"
    # The client held an agent-bound reference; the server gets its own id back.
    assert call["mcp-session-id"] and not call["mcp-session-id"].startswith("mcp1.")
    # GET (SSE stream) and DELETE (session end) of this session carry only the server
    # label. (The harness' readiness probe is a GET without a session.)
    session_id = call["mcp-session-id"]
    others = [
        r for r in records
        if r["method"] in ("GET", "DELETE") and dict(r["headers"]).get("mcp-session-id") == session_id
    ]
    assert {r["method"] for r in others} == {"GET", "DELETE"}, [r["method"] for r in records]
    for record in others:
        labels = [(k, v) for k, v in record["headers"] if k.startswith("x-mcp-")]
        assert labels == [("x-mcp-server-id", "financial-data")], record


def test_streamed_sse_response_with_progress(mcp_gateway):
    """A tool that reports progress answers as text/event-stream; the notifications and
    the result reach the client through the filter."""
    url, seen = mcp_gateway
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def session():
        async with connect(url) as client:
            return await client.call_tool("export_statement", {"account_id": "acc-001"}, progress_callback=on_progress)

    result = run(session)
    assert not result.is_error
    assert result.content[0].text == "statement for acc-001: 2 rows"
    assert [p[0] for p in progress] == [1, 2, 3]
    call = next(h for h in seen.posts() if h.get("x-mcp-tool-name") == "export_statement")
    assert call["x-mcp-method"] == "tools/call"
