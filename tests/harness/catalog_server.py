"""A test MCP server built on the official Python SDK's low-level `Server`, serving a
catalog read from a JSON file (harness/catalog_servers.py documents the format): its
tools with their `inputSchema` exactly as written (the low-level server advertises
what the handler returns; the high-level MCPServer would generate schemas from Python
signatures, which could never drift or carry `x-mcp-header` on purpose), a few
prompts, resources and resource templates.

Options the gateway tests need:
- `--sse`: every list answer and tool result is preceded by a progress notification,
  which makes the SDK commit the answer to `text/event-stream` (a 2026-07-28 answer
  with no notification is plain JSON: the SDK defers the SSE choice until one comes);
  without it the server runs in the SDK's `json_response` mode.
- `--page-size N`: list answers carry at most N entries and a `nextCursor`.
- list answers are marked `cacheScope: "public"` with a long `ttlMs`, so a test sees
  the gateway tighten them for a list it filtered per caller.
- every HTTP request is appended to `--header-log` (headers as the demo servers log
  them, demo/server_logs.py), every `tools/call` the SDK dispatches to
  `--dispatch-log` with its name and arguments, before the tool "runs" (it echoes).

Options for the broken servers of the preflight and canary tests (issue 17):
- `--claim-versions a,b`: `server/discover` answers these `supportedVersions` (the
  SDK's own handler lists only the modern versions, although it serves `initialize`).
- `--refuse-initialize`: a POST whose JSON-RPC method is `initialize` gets HTTP 400 and
  the -32022 "Unsupported protocol version" error with `data.supported: ["2026-07-28"]`,
  what the spec asks of a modern-only server; with `--claim-versions` naming a legacy
  version, the server claims an era it refuses.
- `--fail-tools`: every `tools/call` answers a result with `isError: true` (after the
  dispatch log line, so a test still sees the call arrived).

No argument validation here on purpose: whatever arrives is dispatched and logged, so
a test sees exactly which calls the gateway let through. (The SDK itself still checks
`Mcp-Param-*` headers against the advertised schema, as the spec asks of servers.)

    python tests/harness/catalog_server.py --port 8010 --catalog catalog.json [--sse] [--page-size 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import uvicorn
from mcp import types
from mcp.server.lowlevel import Server

# demo/server_logs.py: the header log every demo and test server writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "demo"))
from server_logs import HeaderLog  # noqa: E402

# Long enough that a shared cache would certainly still serve the entry to the next caller.
PUBLIC_CACHE = {"ttlMs": 300_000, "cacheScope": "public"}
# Results given as dicts are validated by the SDK as they are: the field its models default.
COMPLETE = {"resultType": "complete"}


def page(entries: list, cursor: str | None, size: int | None) -> tuple[list, str | None]:
    """One page of `entries` from `cursor` (an offset as a string) and the next cursor."""
    start = int(cursor) if cursor else 0
    if not size:
        return entries[start:], None
    end = start + size
    return entries[start:end], (str(end) if end < len(entries) else None)


def build(
    catalog: dict,
    sse: bool,
    page_size: int | None,
    dispatch_log: str | None,
    fail_tools: bool = False,
    claim_versions: list[str] | None = None,
) -> Server:
    lock = threading.Lock()

    async def notify(ctx, params) -> None:
        """In SSE mode: one progress notification on this request's stream first."""
        if not sse:
            return
        meta = (params.meta if params is not None else None) or {}
        token = meta.get("progressToken") if isinstance(meta, dict) else getattr(meta, "progress_token", None)
        await ctx.session.send_progress_notification(
            token if token is not None else f"list-{ctx.request_id}", 0.5, 1.0, "working", related_request_id=ctx.request_id
        )

    def listed(key: str, params) -> dict:
        entries, next_cursor = page(catalog.get(key, []), params.cursor if params else None, page_size)
        result = {key: entries, **PUBLIC_CACHE, **COMPLETE}
        if next_cursor is not None:
            result["nextCursor"] = next_cursor
        return result

    async def list_tools(ctx, params):
        await notify(ctx, params)
        return listed("tools", params)

    async def call_tool(ctx, params):
        arguments = params.arguments
        if dispatch_log:
            with lock, open(dispatch_log, "a", encoding="utf-8") as log:
                log.write(json.dumps({"method": "tools/call", "name": params.name, "arguments": arguments}) + "\n")
        await notify(ctx, params)
        known = any(tool["name"] == params.name for tool in catalog.get("tools", []))
        if not known:
            return {"content": [{"type": "text", "text": f"unknown tool {params.name}"}], "isError": True, **COMPLETE}
        if fail_tools:
            return {"content": [{"type": "text", "text": f"{params.name} failed (--fail-tools)"}], "isError": True, **COMPLETE}
        return {"content": [{"type": "text", "text": json.dumps({"tool": params.name, "arguments": arguments})}], **COMPLETE}

    async def list_prompts(ctx, params):
        await notify(ctx, params)
        return listed("prompts", params)

    async def get_prompt(ctx, params):
        return {"messages": [{"role": "user", "content": {"type": "text", "text": f"prompt {params.name}"}}], **COMPLETE}

    async def list_resources(ctx, params):
        await notify(ctx, params)
        return listed("resources", params)

    async def list_resource_templates(ctx, params):
        await notify(ctx, params)
        return listed("resourceTemplates", params)

    async def read_resource(ctx, params):
        return {"contents": [{"uri": str(params.uri), "mimeType": "text/plain", "text": f"resource {params.uri}"}], **COMPLETE}

    server = Server(
        catalog.get("name", "catalog-server"),
        version=catalog.get("version", "1.0.0"),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
    )
    if claim_versions:
        default_discover = server._handle_discover

        async def discover(ctx, params):
            # The SDK's answer (capabilities, instructions) with the claimed versions.
            result = await default_discover(ctx, params)
            return result.model_copy(update={"supported_versions": list(claim_versions)})

        server.add_request_handler("server/discover", types.RequestParams, discover)
    return server


class RefuseInitialize:
    """ASGI middleware: a POST whose JSON-RPC method is `initialize` is answered 400 with
    the 2026-07-28 UnsupportedProtocolVersionError (-32022) listing only the modern
    version, as a modern-only server answers; any other request passes unchanged (its
    body is replayed to the app)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if isinstance(request, dict) and request.get("method") == "initialize":
            error = {
                "jsonrpc": "2.0",
                "id": request.get("id"),
                "error": {"code": -32022, "message": "Unsupported protocol version", "data": {"supported": ["2026-07-28"]}},
            }
            payload = json.dumps(error).encode()
            await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--catalog", required=True, help="JSON file: tools, prompts, resources, resourceTemplates")
    parser.add_argument("--sse", action="store_true", help="answer with text/event-stream")
    parser.add_argument("--page-size", type=int, default=0, help="entries per list page (0: one page)")
    parser.add_argument("--header-log", help="append received headers to this JSONL file")
    parser.add_argument("--dispatch-log", help="append dispatched tool calls to this JSONL file")
    parser.add_argument("--claim-versions", help="comma-separated supportedVersions server/discover answers")
    parser.add_argument("--refuse-initialize", action="store_true", help="answer initialize with 400 and -32022")
    parser.add_argument("--fail-tools", action="store_true", help="every tools/call result has isError: true")
    args = parser.parse_args()
    catalog = json.loads(Path(args.catalog).read_text("utf-8"))
    claims = [v.strip() for v in args.claim_versions.split(",") if v.strip()] if args.claim_versions else None
    server = build(catalog, args.sse, args.page_size or None, args.dispatch_log, args.fail_tools, claims)
    # Stateless: any request stands alone (2026-07-28 always; older clients without a session).
    app = server.streamable_http_app(host=args.host, json_response=not args.sse, stateless_http=True)
    if args.refuse_initialize:
        app = RefuseInitialize(app)
    uvicorn.run(HeaderLog(app, args.header_log), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
