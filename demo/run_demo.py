"""The demo: an official-SDK MCP server behind Envoy with the MCP filter, driven by the
official SDK client. Prints what the filter did: the headers the server saw for each
request, and what a client gets back when the gateway refuses a request.

Run it with scripts/demo.sh (which installs and builds everything first).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import request, start_gateway, start_mcp_server  # noqa: E402

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def title(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}")


class ServerView:
    """Reads what the MCP server recorded, a request at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.shown = 0

    def show_new(self) -> None:
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        for line in lines[self.shown :]:
            record = json.loads(line)
            headers = record["headers"]
            labels = [f"{k}: {v}" for k, v in headers if k.startswith("x-")]
            client = [f"{k}: {v}" for k, v in headers if k.startswith("mcp-")]
            print(f"  server got {record['method']} {record['path']}")
            for label in labels:
                print(f"    {label}")
            if client:
                print(f"    {DIM}client headers: {', '.join(client)}{RESET}")
            if not labels:
                print(f"    {DIM}(no gateway headers: passed through){RESET}")
        self.shown = len(lines)


async def modern_session(url: str, view: ServerView) -> None:
    title("MCP 2026-07-28 client (stateless) through Envoy")
    async with Client(url, mode="2026-07-28") as client:
        tools = await client.list_tools()
        print(f"  tools/list -> {', '.join(t.name for t in tools.tools)}")
        view.show_new()
        result = await client.call_tool("get_account_balance", {"account_id": "acc-001"})
        print(f"  tools/call get_account_balance -> {result.content[0].text}")
        view.show_new()


async def handshake_session(url: str, view: ServerView) -> None:
    title("Handshake-era client (initialize + Mcp-Session-Id) through Envoy")
    async with Client(url, mode="legacy") as client:
        print(f"  negotiated protocol version {client.protocol_version}")
        result = await client.call_tool("query_transactions", {"account_id": "acc-002"})
        print(f"  tools/call query_transactions -> {result.content[0].text}")
    view.show_new()


def forged_and_refused(port: int, view: ServerView) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "query_transactions", "arguments": {"account_id": "acc-001"}, "_meta": meta}}
    mirrored = [("content-type", "application/json"), ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")]

    title("A client forges gateway headers: they are stripped, the labels come from the body")
    forged = [("x-agent-id", "admin"), ("x-mcp-tool-name", "harmless_tool")]
    print(f"  client sends {', '.join(f'{k}: {v}' for k, v in forged)}")
    response = request(port, "POST", "/mcp", body, mirrored + [("mcp-name", "query_transactions")] + forged)
    print(f"  -> HTTP {response.status} {response.body.decode()[:120]}")
    view.show_new()

    title("A request whose Mcp-Name header disagrees with its body is refused")
    response = request(port, "POST", "/mcp", body, mirrored + [("mcp-name", "get_account_balance")])
    print(f"  -> HTTP {response.status} {response.body.decode()}")
    title("A JSON-RPC batch is refused")
    response = request(port, "POST", "/mcp", json.dumps([body]), [])
    print(f"  -> HTTP {response.status} {response.body.decode()}")
    before = view.shown
    view.show_new()
    if view.shown == before:
        print(f"  {DIM}(the MCP server saw neither refused request){RESET}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mcp-gateway-demo-") as tmp:
        logs = Path(tmp)
        view = ServerView(logs / "server-saw.jsonl")
        server, server_port = start_mcp_server(logs, view.path)
        envoy = None
        try:
            envoy, port = start_gateway(logs, {"mcp_server": server_port})
            view.shown = len(view.path.read_text().splitlines()) if view.path.exists() else 0
            url = f"http://127.0.0.1:{port}/mcp"
            print(f"{BOLD}MCP gateway demo{RESET}: Envoy {url} (envoy/envoy.yaml + the MCP filter)"
                  f" -> demo MCP server 127.0.0.1:{server_port} (official Python SDK)")
            anyio.run(modern_session, url, view)
            anyio.run(handshake_session, url, view)
            forged_and_refused(port, view)
            print(f"\n{BOLD}Done.{RESET} Envoy and the server are stopped; logs were in {logs}.")
            return 0
        except Exception as error:  # show the logs that explain a failure
            print(f"\ndemo failed: {error}", file=sys.stderr)
            for proc in (envoy, server):
                if proc is not None:
                    print(f"--- {proc.name} log ---\n{proc.log()[-3000:]}", file=sys.stderr)
            return 1
        finally:
            if envoy is not None:
                envoy.stop()
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
