"""The support team's knowledge-base server (demo/fleet-addition/knowledge-base.yaml),
built with the official MCP Python SDK like demo/servers/hr_directory.py. It is not in
registry/examples: the demo (demo/run_demo.py) registers it midway, live.

Tools and their parameters follow the registered schemas (demo/fleet-addition/schemas/
search_articles_v1.json, get_article_v1.json); the articles are fake. As in the other
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

server = MCPServer("knowledge-base", version="1.0.0")


# `article_id` pattern as registered (get_article_v1.json), so a malformed id is
# refused by the SDK's own input validation before the tool runs.
ArticleId = Annotated[str, Field(pattern=r"^kb-[0-9]{3}$")]


@server.tool()
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


@server.tool()
def get_article(article_id: ArticleId) -> dict:
    """One article, whole."""
    if article_id not in ARTICLES:
        # ToolError: an anticipated failure, its text reaches the client (any other
        # exception is reported as a crash, without its message).
        raise ToolError(f"unknown article {article_id}")
    return {"article_id": article_id, **ARTICLES[article_id]}


def main() -> None:
    serve(server, __doc__, 8003)


if __name__ == "__main__":
    main()
