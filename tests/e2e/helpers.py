"""Request builders shared by the end-to-end tests."""

from __future__ import annotations

import json

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def modern_call(tool: str, request_id=1, arguments=None) -> tuple[str, list[tuple[str, str]]]:
    """A 2026-07-28 tools/call body and the mirrored headers a compliant client sends."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments or {}, "_meta": META},
        }
    )
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ]
    return body, headers


def echoed_headers(response) -> list[tuple[str, str]]:
    """Headers the echo upstream received, in order, repeats kept."""
    return [tuple(pair) for pair in json.loads(response.body)["headers"]]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]
