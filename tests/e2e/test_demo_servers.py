"""The example fleet's hr-directory (official Python SDK) and weather (official
TypeScript SDK v1) servers, reached directly by the official Python SDK client, no
gateway: their tools are the ones their manifests register, with input schemas that
agree with the registered schema files; each tool answers; the header log has one line
per HTTP request the client sent."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import yaml
from harness import ROOT
from harness.observe import json_lines
from harness.procs import dispatch_log
from harness.servers import start_hr_directory, start_weather
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

EXAMPLES = ROOT / "registry" / "examples"
# Sent by the test client; the first two are in the servers' logged prefixes, the last is not.
SENT = {"authorization": "Bearer not-checked-here", "x-agent-id": "agent-under-test", "x-unlogged": "1"}
# JSON Schema keywords the generated inputSchema must carry as registered.
CONSTRAINTS = ("type", "minimum", "maximum", "minLength", "pattern")


def registered(server_id: str) -> dict[str, dict]:
    """Tool name -> registered JSON Schema, from the server's manifest."""
    manifest = yaml.safe_load((EXAMPLES / f"{server_id}.yaml").read_text())
    return {tool["name"]: json.loads((EXAMPLES / tool["schema_ref"]).read_text()) for tool in manifest["tools"]}


def assert_schema_agrees(tool: str, generated: dict, schema: dict) -> None:
    assert generated["type"] == schema["type"] == "object", tool
    assert set(generated["properties"]) == set(schema["properties"]), tool
    # An SDK may leave out an empty `required`.
    assert sorted(generated.get("required", [])) == sorted(schema["required"]), tool
    for name, prop in schema["properties"].items():
        for keyword in CONSTRAINTS:
            if keyword in prop:
                assert generated["properties"][name].get(keyword) == prop[keyword], (tool, name, keyword)


def session(url: str, calls: list[tuple[str, dict]]):
    """Connects (the SDK's default mode: server/discover, falling back to initialize),
    lists the tools and makes `calls`; returns (protocol version, server info, tools,
    results, number of HTTP requests sent)."""
    sent = []

    async def count(request):
        sent.append((request.method, request.url.path))

    async def run():
        http = create_mcp_http_client(headers=SENT)
        http.event_hooks["request"].append(count)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            results = [await client.call_tool(name, arguments) for name, arguments in calls]
            return client.protocol_version, client.server_info, tools.tools, results

    version, info, tools, results = anyio.run(run)
    return version, info, tools, results, sent


def assert_header_log(seen: Seen, sent: list[tuple[str, str]], version: str) -> None:
    records = seen.records()
    assert [(r["method"], r["path"]) for r in records] == sent
    for record in records:
        headers = dict(record["headers"])
        assert headers["authorization"] == SENT["authorization"]
        assert headers["x-agent-id"] == SENT["x-agent-id"]
        assert "x-unlogged" not in headers
    # Once negotiated, every request names the protocol version.
    assert dict(records[-1]["headers"])["mcp-protocol-version"] == version


class Seen:
    """A server's header and dispatch logs, from after its start: the harness's
    readiness probes (GET /mcp) are logged too, and left out here."""

    def __init__(self, path: Path):
        self.path = path
        self.probes = len(json_lines(path))
        # The readiness probe got an answer, so the server logged it.
        assert self.probes >= 1 and all(r["method"] == "GET" for r in json_lines(path))

    def records(self) -> list[dict]:
        return json_lines(self.path)[self.probes :]

    def dispatches(self) -> list[str]:
        return [record["name"] for record in json_lines(dispatch_log(self.path))]


@pytest.fixture
def hr_directory(logs):
    path = logs / "hr-seen.jsonl"
    proc, port = start_hr_directory(logs, header_log=path)
    yield f"http://127.0.0.1:{port}/mcp", Seen(path)
    proc.stop()


@pytest.fixture
def weather(logs):
    path = logs / "weather-seen.jsonl"
    proc, port = start_weather(logs, header_log=path)
    yield f"http://127.0.0.1:{port}/mcp", Seen(path)
    proc.stop()


def test_hr_directory_serves_its_registered_tools(hr_directory):
    url, seen = hr_directory
    calls = [
        ("find_employee", {"query": "reliability"}),
        ("get_org_chart", {"employee_id": "e-110", "depth": 1}),
        ("list_open_roles", {"department": "finance"}),
    ]
    version, info, tools, results, sent = session(url, calls)

    assert version == "2026-07-28"
    assert (info.name, info.version) == ("hr-directory", "0.4.0")
    schemas = registered("hr-directory")
    assert sorted(t.name for t in tools) == sorted(schemas)
    for tool in tools:
        assert_schema_agrees(tool.name, tool.input_schema, schemas[tool.name])

    assert not any(r.is_error for r in results)
    # Structured output as the SDK derives it from the return type: a list is wrapped
    # in {"result": ...}; a bare dict is unstructured, its JSON in one text item.
    found, roles = results[0].structured_content["result"], results[2].structured_content["result"]
    chart = json.loads(results[1].content[0].text)
    assert [e["employee_id"] for e in found] == ["e-112"]
    assert json.loads(results[0].content[0].text)["name"] == "Dmitri Ivanov"
    assert chart["manager"]["employee_id"] == "e-100"
    assert [r["employee_id"] for r in chart["reports"]] == ["e-111", "e-112"]
    # depth 1: the reports' own reports are not expanded.
    assert all(r["reports"] == [] for r in chart["reports"])
    assert [r["id"] for r in roles] == ["r-12"]

    assert_header_log(seen, sent, version)
    posts = [dict(r["headers"]) for r in seen.records()]
    assert [h.get("mcp-name") for h in posts if h.get("mcp-method") == "tools/call"] == [c[0] for c in calls]
    assert seen.dispatches() == [c[0] for c in calls]


def test_weather_serves_its_registered_tools_at_2025_11_25(weather):
    url, seen = weather
    calls = [
        ("get_forecast", {"city": "Oslo", "days": 2}),
        ("get_alerts", {"region": "NO"}),
        # Refused by the SDK's own validation of the registered pattern.
        ("get_alerts", {"region": "no"}),
    ]
    version, info, tools, results, sent = session(url, calls)

    # The v1 SDK does not speak 2026-07-28: the client's server/discover probe is
    # refused and it falls back to the initialize handshake at the server's latest.
    assert version == "2025-11-25"
    assert (info.name, info.version) == ("weather", "2.0.1")
    schemas = registered("weather")
    assert sorted(t.name for t in tools) == sorted(schemas)
    for tool in tools:
        assert_schema_agrees(tool.name, tool.input_schema, schemas[tool.name])

    forecast, alerts, refused = results
    assert not forecast.is_error and not alerts.is_error
    body = json.loads(forecast.content[0].text)
    assert body["city"] == "Oslo"
    assert [day["sky"] for day in body["forecast"]] == ["snow", "snow"]
    assert json.loads(alerts.content[0].text)["alerts"][0]["event"] == "storm"
    assert refused.is_error and "pattern" in refused.content[0].text

    assert_header_log(seen, sent, version)
    assert dict(seen.records()[0]["headers"])["mcp-method"] == "server/discover"
    assert seen.dispatches() == [c[0] for c in calls]
