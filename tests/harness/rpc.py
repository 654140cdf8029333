"""One MCP request through the gateway as raw HTTP, and its answer read back whether
the server answered with JSON or SSE (the tests need the exact bytes: status, headers,
every SSE event, fields such as `cacheScope` that SDK clients hide)."""

from __future__ import annotations

import base64
import json

from .authz import token
from .client import Response, request

MODERN = "2026-07-28"
# What the official TypeScript SDK v1 servers speak (no handshake needed: the test
# servers are stateless).
LEGACY = "2025-11-25"
# Methods whose 2026-07-28 requests mirror a name into `Mcp-Name`.
NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def rpc(
    port: int,
    path: str,
    method: str,
    params: dict | None = None,
    request_id="1",
    agent: str | None = None,
    scopes: str = "",
    version: str = MODERN,
    headers: list[tuple[str, str]] = (),
) -> Response:
    """POSTs one JSON-RPC request with the headers a compliant client of `version`
    sends (a bearer token for `agent` with `scopes` when given) plus `headers`."""
    params = dict(params or {})
    sent = [("content-type", "application/json"), ("accept", "application/json, text/event-stream"), ("mcp-protocol-version", version)]
    if version >= MODERN:
        params["_meta"] = {
            **params.get("_meta", {}),
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        sent.append(("mcp-method", method))
        if method in NAMED:
            sent.append(("mcp-name", str(params[NAMED[method]])))
    if agent is not None:
        sent.append(("authorization", f"Bearer {token(agent, scopes)}"))
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    return request(port, "POST", path, body, sent + list(headers))


def sse_messages(body: bytes) -> list[dict]:
    """The JSON-RPC messages of an SSE body, in order (one per event's data)."""
    messages = []
    for event in body.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        if data:
            messages.append(json.loads("\n".join(data)))
    return messages


def messages(response: Response) -> list[dict]:
    """Every JSON-RPC message of an answer: one for JSON, each event's for SSE."""
    kind = (response.header("content-type") or "").split(";")[0].strip()
    if kind == "text/event-stream":
        return sse_messages(response.body)
    return [json.loads(response.body)]


def answer(response: Response) -> dict:
    """The response message (the one with an `id`) of a JSON or SSE answer."""
    found = [m for m in messages(response) if "id" in m and ("result" in m or "error" in m)]
    assert len(found) == 1, (response.status, response.body[:500])
    return found[0]


def result(response: Response) -> dict:
    """The `result` of a successful answer (asserts there is one)."""
    assert response.status == 200, (response.status, response.body[:500])
    message = answer(response)
    assert "result" in message, message
    return message["result"]


def content_type(response: Response) -> str:
    return (response.header("content-type") or "").split(";")[0].strip()


def mirrored(schema: dict, arguments: dict | None) -> list[tuple[str, str]]:
    """The `Mcp-Param-*` headers a compliant 2026-07-28 client sends for `arguments`
    of a tool with `schema` (top-level properties annotated `x-mcp-header`): booleans
    as true/false, other scalars as text, non-ASCII or padded values in the base64
    sentinel; absent or null arguments get no header."""
    headers = []
    for name, prop in (schema.get("properties") or {}).items():
        token_name = prop.get("x-mcp-header") if isinstance(prop, dict) else None
        value = (arguments or {}).get(name)
        if not isinstance(token_name, str) or value is None or isinstance(value, (dict, list)):
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        plain = text.isascii() and text.isprintable() and text == text.strip()
        headers.append((f"Mcp-Param-{token_name}", text if plain else sentinel(text)))
    return headers


def sentinel(value: str) -> str:
    """MCP's base64 sentinel for a header value that is not plain ASCII."""
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="
