"""The demo: an official-SDK MCP server behind Envoy with the MCP filter, driven by the
official SDK client. Prints what the gateway did: the headers the server saw for each
request (labels from the filter, identity from the authz-service), and what a client
gets back when the gateway refuses a request (401, 403 with its scope challenge, 400).

Run it with scripts/demo.sh (which installs and builds everything first).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import (  # noqa: E402
    Authz,
    Ratelimit,
    audit_records,
    prometheus_when,
    request,
    start_gateway,
    start_mcp_server,
    token,
)
from harness.authz import READ_SCOPES  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

WRITE_SCOPE = "mcp.server.financial-data:tools.write"
# Two agents with different scopes (tokens minted by the demo's stand-in issuer).
RECONCILER = token("reconciler-agent", READ_SCOPES, user="alice")
TREASURY = token("treasury-agent", f"{READ_SCOPES} {WRITE_SCOPE}")
LOOPING = token("agent-prod-001", READ_SCOPES)


def client(url: str, bearer: str, mode: str) -> Client:
    """Official SDK client sending `Authorization: Bearer ...`."""
    http = create_mcp_http_client(headers={"authorization": f"Bearer {bearer}"})
    return Client(streamable_http_client(url, http_client=http), mode=mode)

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
            if any(k == "authorization" for k, _ in headers):
                labels.append("authorization: PRESENT (should never happen)")
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
    title("MCP 2026-07-28 client (stateless): reconciler-agent acting for alice, read scopes")
    async with client(url, RECONCILER, "2026-07-28") as session:
        tools = await session.list_tools()
        print(f"  tools/list -> {', '.join(t.name for t in tools.tools)}")
        view.show_new()
        result = await session.call_tool("get_account_balance", {"account_id": "acc-001"})
        print(f"  tools/call get_account_balance -> {' '.join(result.content[0].text.split())}")
        view.show_new()
    print(f"  {DIM}(x-agent-id / x-user-id come from the verified token; the token itself never reaches the server){RESET}")

    title("treasury-agent (read + write scopes) moves money")
    async with client(url, TREASURY, "2026-07-28") as session:
        result = await session.call_tool(
            "transfer_funds", {"from_account": "acc-001", "to_account": "acc-002", "amount": 25}
        )
        print(f"  tools/call transfer_funds -> {result.content[0].text}")
        view.show_new()


async def handshake_session(url: str, view: ServerView) -> None:
    title("Handshake-era client (initialize + Mcp-Session-Id) through Envoy")
    async with client(url, RECONCILER, "legacy") as session:
        print(f"  negotiated protocol version {session.protocol_version}")
        result = await session.call_tool("query_transactions", {"account_id": "acc-002"})
        print(f"  tools/call query_transactions -> {' '.join(result.content[0].text.split())}")
    view.show_new()


def forged_and_refused(port: int, view: ServerView) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}

    def call(tool: str, arguments: dict, request_id: int) -> tuple[dict, list[tuple[str, str]]]:
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, "_meta": meta}}
        headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream"),
                   ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)]
        return body, headers

    def show(response) -> None:
        print(f"  -> HTTP {response.status}")
        challenge = response.header("www-authenticate")
        if challenge:
            print(f"     WWW-Authenticate: {challenge}")
        print(f"     {response.body.decode()[:200]}")

    body, headers = call("query_transactions", {"account_id": "acc-001"}, 7)
    auth = ("authorization", f"Bearer {RECONCILER}")

    title("No token: 401 and where to find the authorization server")
    show(request(port, "POST", "/mcp", body, headers))

    title("reconciler-agent tries transfer_funds without the write scope: 403 with the scope challenge")
    transfer, transfer_headers = call("transfer_funds", {"from_account": "acc-001", "to_account": "x", "amount": 1e6}, 8)
    show(request(port, "POST", "/mcp", transfer, transfer_headers + [auth]))

    title("Forged gateway headers are stripped; labels come from the body, identity from the token")
    forged = [("x-agent-id", "admin"), ("x-user-id", "ceo"), ("x-mcp-tool-name", "harmless_tool")]
    print(f"  client sends {', '.join(f'{k}: {v}' for k, v in forged)}")
    response = request(port, "POST", "/mcp", body, headers + [auth] + forged)
    print(f"  -> HTTP {response.status}")
    view.show_new()

    title("Mcp-Name header that disagrees with the body: refused by the filter")
    show(request(port, "POST", "/mcp", body, [(k, "get_account_balance" if k == "mcp-name" else v) for k, v in headers] + [auth]))
    title("A JSON-RPC batch: refused by the filter")
    show(request(port, "POST", "/mcp", json.dumps([body]), [auth]))
    before = view.shown
    view.show_new()
    if view.shown == before:
        print(f"  {DIM}(the MCP server saw none of the refused requests){RESET}")


def looping_agent(port: int, view: ServerView) -> None:
    title("agent-prod-001 loops on query_transactions: the seed's 120 calls per minute, then 429")
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream"),
               ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"),
               ("mcp-name", "query_transactions")]

    def call(bearer: str, request_id: int):
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": "query_transactions", "arguments": {"account_id": "acc-001"}, "_meta": meta}}
        return request(port, "POST", "/mcp", body, headers + [("authorization", f"Bearer {bearer}")])

    # Limits count per fixed minute; do not let the loop straddle two windows.
    if time.time() % 60 > 50:
        wait = 60 - time.time() % 60 + 0.1
        print(f"  {DIM}(waiting {wait:.0f}s for the next minute window){RESET}")
        time.sleep(wait)
    statuses: dict[int, int] = {}
    refused = None
    for i in range(1, 131):
        response = call(LOOPING, 1000 + i)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status == 429 and refused is None:
            refused = (i, response)
    print(f"  130 calls -> {', '.join(f'{n} x HTTP {s}' for s, n in sorted(statuses.items()))}")
    if refused:
        i, response = refused
        print(f"  first refusal at call {i}: HTTP 429, Retry-After: {response.header('retry-after')},"
              f" X-RateLimit-Limit: {response.header('x-ratelimit-limit')}")
        print(f"     {response.body.decode()}")
    response = call(RECONCILER, 2000)
    print(f"  reconciler-agent, same tool, same minute -> HTTP {response.status} (its own counter)")
    view.shown = len(view.path.read_text().splitlines())


def audit_and_metrics(envoy) -> None:
    title("Audit trail: one JSON record per MCP request, from Envoy's access log")
    # Envoy flushes its access log every second: read until nothing new arrives.
    records, previous = [], -1
    while len(records) != previous:
        previous = len(records)
        time.sleep(1.5)
        records = audit_records(envoy.audit_path, 0, timeout=0)
    print(f"  {len(records)} records (access log: %FILTER_STATE(wasm.mcp_audit:PLAIN)%)")
    examples = [
        ("an allowed call", lambda r: r["decision"] == "allowed" and r["tool_name"]),
        ("a refusal by the authz-service", lambda r: r["decision"] == "denied" and r["http_status"] == 403),
        ("a rate-limited call", lambda r: r["decision"] == "rate_limited"),
    ]
    for label, match in examples:
        record = next((r for r in records if match(r)), None)
        if record:
            print(f"  {DIM}{label}:{RESET}\n    {json.dumps(record)}")
    counts = Counter((r["decision"], r["output_status"]) for r in records)
    print("  by decision and output_status: " + ", ".join(f"{d}/{o}: {n}" for (d, o), n in sorted(counts.items())))

    title("Metrics from the filter (Envoy /stats/prometheus, labels from envoy.yaml's stats_tags)")
    # Histograms reach the admin output at Envoy's next stats flush (every 5 s).
    samples = prometheus_when(
        envoy.admin_port,
        lambda s: any(v for (n, _), v in s.items() if n == "mcp_tool_call_duration_ms_count"),
    )
    for (name, labels), value in sorted(samples.items(), key=lambda item: (item[0][0], sorted(item[0][1]))):
        if name in ("mcp_tool_calls_total", "mcp_sessions_total", "mcp_negotiation_failures_total") and value:
            shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
            print(f"  {name}{{{shown}}} {value:g}")
    for (name, labels), total in sorted(samples.items(), key=lambda item: sorted(item[0][1])):
        if name == "mcp_tool_call_duration_ms_count" and total:
            tool = dict(labels)["mcp_tool"]
            # p99 from the cumulative buckets: the first bound holding 99% of the calls.
            bounds = sorted(
                float(dict(l)["le"])
                for (n, l), count in samples.items()
                if n == "mcp_tool_call_duration_ms_bucket" and dict(l)["mcp_tool"] == tool and count >= 0.99 * total
            )
            print(f"  mcp_tool_call_duration_ms{{mcp_tool=\"{tool}\"}}: {total:g} calls, p99 <= {bounds[0]:g} ms")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mcp-gateway-demo-") as tmp:
        logs = Path(tmp)
        view = ServerView(logs / "server-saw.jsonl")
        server, server_port = start_mcp_server(logs, view.path)
        envoy = authz = ratelimit = None
        try:
            authz = Authz(logs)
            ratelimit = Ratelimit(logs)
            envoy, port = start_gateway(
                logs, {"mcp_server": server_port, **authz.upstreams(), **ratelimit.upstreams()}
            )
            view.shown = len(view.path.read_text().splitlines()) if view.path.exists() else 0
            url = f"http://127.0.0.1:{port}/mcp"
            print(f"{BOLD}MCP gateway demo{RESET}: Envoy {url} (envoy/envoy.yaml: MCP filter + ext_authz + ratelimit)"
                  f" -> demo MCP server 127.0.0.1:{server_port} (official Python SDK);"
                  f" authz-service 127.0.0.1:{authz.grpc_port} with demo/policy.yaml;"
                  f" ratelimit-service 127.0.0.1:{ratelimit.grpc_port} with demo/limits.yaml")
            anyio.run(modern_session, url, view)
            anyio.run(handshake_session, url, view)
            forged_and_refused(port, view)
            looping_agent(port, view)
            audit_and_metrics(envoy)
            print(f"\n{BOLD}Done.{RESET} Envoy and the server are stopped; logs were in {logs}.")
            return 0
        except Exception as error:  # show the logs that explain a failure
            print(f"\ndemo failed: {error}", file=sys.stderr)
            for proc in (envoy, authz, ratelimit, server):
                if proc is not None:
                    print(f"--- {proc.name} log ---\n{proc.log()[-3000:]}", file=sys.stderr)
            return 1
        finally:
            for proc in (envoy, authz, ratelimit):
                if proc is not None:
                    proc.stop()
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
