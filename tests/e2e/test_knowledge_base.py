"""The knowledge-base server the demo registers live (demo/servers/knowledge_base.py,
official Python SDK; manifest demo/fleet-addition/knowledge-base.yaml), reached directly
by the official Python SDK client, no gateway, as test_demo_servers.py does for the
example fleet's servers: its tools are the ones its manifest registers, with input
schemas that agree with the registered schema files; each tool answers; the header log
has one line per HTTP request the client sent."""

from __future__ import annotations

import json

import pytest
import yaml
from harness import ROOT
from harness.servers import start_knowledge_base

from e2e.test_demo_servers import Seen, assert_header_log, assert_schema_agrees, session

ADDITION = ROOT / "demo" / "fleet-addition"


def registered() -> dict[str, dict]:
    """Tool name -> registered JSON Schema, from knowledge-base.yaml."""
    manifest = yaml.safe_load((ADDITION / "knowledge-base.yaml").read_text())
    return {tool["name"]: json.loads((ADDITION / tool["schema_ref"]).read_text()) for tool in manifest["tools"]}


@pytest.fixture
def knowledge_base(logs):
    path = logs / "kb-seen.jsonl"
    proc, port = start_knowledge_base(logs, header_log=path)
    yield f"http://127.0.0.1:{port}/mcp", Seen(path)
    proc.stop()


def test_knowledge_base_serves_its_registered_tools(knowledge_base):
    url, seen = knowledge_base
    calls = [
        ("search_articles", {"query": "access"}),
        ("get_article", {"article_id": "kb-205"}),
        # A well-formed id that does not exist: the tool's own error.
        ("get_article", {"article_id": "kb-999"}),
        # Refused by the SDK's own validation of the registered pattern.
        ("get_article", {"article_id": "205"}),
    ]
    version, info, tools, results, sent = session(url, calls)

    assert version == "2026-07-28"
    manifest = yaml.safe_load((ADDITION / "knowledge-base.yaml").read_text())
    assert (info.name, info.version) == (manifest["server_id"], manifest["version"]) == ("knowledge-base", "1.0.0")
    schemas = registered()
    assert sorted(t.name for t in tools) == sorted(schemas) == ["get_article", "search_articles"]
    for tool in tools:
        assert_schema_agrees(tool.name, tool.input_schema, schemas[tool.name])

    found, article, unknown, malformed = results
    assert not found.is_error and not article.is_error
    # A list return is structured as {"result": [...]}: the title match first, then
    # the tag matches in id order.
    assert [a["article_id"] for a in found.structured_content["result"]] == ["kb-102", "kb-101"]
    body = json.loads(article.content[0].text)
    assert (body["article_id"], body["title"]) == ("kb-205", "What to do when a payment export is stuck")
    assert unknown.is_error and "unknown article kb-999" in unknown.content[0].text
    assert malformed.is_error and "pattern" in malformed.content[0].text

    assert_header_log(seen, sent, version)
    posts = [dict(r["headers"]) for r in seen.records()]
    assert [h.get("mcp-name") for h in posts if h.get("mcp-method") == "tools/call"] == [c[0] for c in calls]
    # The SDK validates the arguments inside the tool's dispatch: every call, refused
    # or not, is dispatched once.
    assert seen.dispatches() == [c[0] for c in calls]
