"""What the demo's MCP servers record about each request, for the demo and the tests
to show exactly what reached a server: the headers of every HTTP request (HeaderLog)
and the name of every tool the SDK dispatched (log_dispatches). Shared by
demo/mcp_server.py and the servers under demo/servers/, with their one command line
(`serve`)."""

from __future__ import annotations

import argparse
import json
import threading

import uvicorn

# Headers worth showing: the gateway's labels, the client's MCP transport headers,
# and the ones that must never arrive (the client's token).
SHOWN = ("x-mcp-", "x-agent-id", "x-user-id", "mcp-", "authorization", "traceparent")


class HeaderLog:
    """ASGI middleware: one JSON line per HTTP request with the headers in SHOWN."""

    def __init__(self, app, path: str | None):
        self.app = app
        self.path = path
        self.lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.path:
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            record = {
                "method": scope["method"],
                "path": scope["path"],
                "headers": [[k, v] for k, v in headers if k.startswith(SHOWN)],
            }
            with self.lock, open(self.path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        await self.app(scope, receive, send)


def log_dispatches(server, path: str) -> None:
    """Records the tool name of every `tools/call` the SDK dispatches on `server`, as it
    parsed it (known tool or not), before the tool runs."""
    dispatch = server.call_tool
    lock = threading.Lock()

    async def call_tool(name, arguments, context=None):
        with lock, open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"method": "tools/call", "name": name}) + "\n")
        return await dispatch(name, arguments, context)

    # The SDK's request handler looks `call_tool` up on the instance at each call.
    server.call_tool = call_tool


def serve(server, description: str, default_port: int, switches: dict | None = None) -> None:
    """The demo servers' command line: Streamable HTTP on --host/--port, with the
    optional --header-log and --dispatch-log. `switches`: a server's own on/off flags,
    `{"--flag": (help, apply)}`; `apply(server)` runs when the flag is given, before
    the dispatch log is attached (so a dispatched call is logged whatever it answers)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--header-log", help="append received headers to this JSONL file")
    parser.add_argument("--dispatch-log", help="append dispatched tool names to this JSONL file")
    for flag, (text, _) in (switches or {}).items():
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args()
    for flag, (_, apply) in (switches or {}).items():
        if getattr(args, flag.lstrip("-").replace("-", "_")):
            apply(server)
    if args.dispatch_log:
        log_dispatches(server, args.dispatch_log)
    app = server.streamable_http_app(host=args.host)
    uvicorn.run(HeaderLog(app, args.header_log), host=args.host, port=args.port, log_level="warning")
