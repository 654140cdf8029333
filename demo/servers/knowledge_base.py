"""The support team's knowledge-base server (demo/fleet-addition/knowledge-base.yaml),
built with the official MCP Python SDK like demo/servers/hr_directory.py. It is not in
registry/examples: the demo (demo/run_demo.py) registers it midway, live.

Tools and their parameters follow the registered schemas (demo/fleet-addition/schemas/
search_articles_v1.json, get_article_v1.json), and tools/list advertises exactly those
schemas (INPUT_SCHEMAS), so the gateway sees no schema drift; the articles are fake. As in the other
demo servers, every HTTP request is appended to a JSON-lines file (`--header-log`) with
the MCP and gateway headers it carried, and with `--dispatch-log` every tool the SDK
dispatches is appended to another file.

    python demo/servers/knowledge_base.py --port 8003 --header-log /tmp/seen.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

# demo/server_logs.py, shared by the demo servers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server_logs import serve  # noqa: E402

ARTICLES = {
    "kb-101": {
        "title": "Resetting a forgotten VPN password",
        "tags": ["vpn", "password", "access"],
        "body": "Open the self-service portal, choose VPN, then Reset. The new password works within five minutes.",
    },
    "kb-102": {
        "title": "Requesting access to the finance reporting tools",
        "tags": ["access", "finance"],
        "body": "File an access request naming the report; your manager and the finance lead approve it.",
    },
    "kb-205": {
        "title": "What to do when a payment export is stuck",
        "tags": ["finance", "export", "incident"],
        "body": "Exports over 10,000 rows stream progress; if none arrives for five minutes, page payments on-call.",
    },
    "kb-310": {
        "title": "Travel to a region with a weather alert",
        "tags": ["travel", "weather"],
        "body": "Check the weather service's alerts for the region before booking; storms void the standard fare.",
    },
}

# The registered schemas (the registry is the source of truth for what agents are told),
# advertised as they are: the gateway compares each tools/list answer with them (schema
# drift) and validates calls against them.
SCHEMA = "https://json-schema.org/draft/2020-12/schema"
INPUT_SCHEMAS = {
    "search_articles": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"query": {"type": "string", "minLength": 1}},
        "required": ["query"],
        "additionalProperties": False,
    },
    "get_article": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"article_id": {"type": "string", "pattern": "^kb-[0-9]{3}$"}},
        "required": ["article_id"],
        "additionalProperties": False,
    },
}


def advertised(fn) -> Tool:
    """`fn` as a tool whose tools/list `inputSchema` is its registered schema instead of
    the one the SDK generates from the signature (titles, no `$schema`), which would be
    counted as drift. Only the advertised schema changes: the SDK validates and converts
    a call's arguments with the model it built from the signature (`fn_metadata`), not
    with `parameters`."""
    return Tool.from_function(fn).model_copy(update={"parameters": INPUT_SCHEMAS[fn.__name__]})


# `article_id` pattern as registered (get_article_v1.json), so a malformed id is
# refused by the SDK's own input validation before the tool runs.
ArticleId = Annotated[str, Field(pattern=r"^kb-[0-9]{3}$")]


def search_articles(query: Annotated[str, Field(min_length=1)]) -> list[dict]:
    """Articles whose title, tags or id contain the query (case-insensitive), best first:
    title matches before tag or id matches."""
    needle = query.lower()
    hits = []
    for article_id, article in ARTICLES.items():
        in_title = needle in article["title"].lower()
        if in_title or needle in article_id or any(needle in tag for tag in article["tags"]):
            hits.append((not in_title, article_id, {"article_id": article_id, "title": article["title"]}))
    return [summary for *_, summary in sorted(hits, key=lambda hit: hit[:2])]


def get_article(article_id: ArticleId) -> dict:
    """One article, whole."""
    if article_id not in ARTICLES:
        # ToolError: an anticipated failure, its text reaches the client (any other
        # exception is reported as a crash, without its message).
        raise ToolError(f"unknown article {article_id}")
    return {"article_id": article_id, **ARTICLES[article_id]}


server = MCPServer("knowledge-base", version="1.0.0", tools=[advertised(fn) for fn in (search_articles, get_article)])


def main() -> None:
    serve(server, __doc__, 8003)


if __name__ == "__main__":
    main()
