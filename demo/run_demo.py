"""The demo: a fleet of MCP servers behind one Envoy, everything the gateway runs on
rendered from the servers' manifests, and a fourth server registered midway, live.

1. Three servers of registry/examples, each built with an official MCP SDK
   (financial-data and hr-directory: Python; weather: TypeScript v1), their manifests
   rendered by `mcp-registry render` into Envoy's routes and clusters, the
   authz-service policy and tool schemas (`--schemas`) and the ratelimit-service
   limits (harness Fleet).
2. Per server, an official Python SDK client: the tools listed, one call, the headers
   the server got from the gateway, the audit record, the per-server metric.
3. What the gateway refuses: no token (401 and its challenge), a missing scope (403
   and its challenge), one server's tool through another server's route, an
   unregistered path (404), an agent over a server's rate limit (429, Retry-After).
4. knowledge-base (demo/fleet-addition, not in registry/examples) registered live:
   manifest copied into the fleet, `render` again; Envoy keeps its PID and serves it.

Run it with scripts/demo.sh (which installs and builds everything first). Every
process it starts is stopped by PID when it ends, also when it fails.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import anyio
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import audit_records, prometheus_when, request, start_mcp_server, token, wait_until  # noqa: E402
from harness.fleet import Fleet, manifest_text  # noqa: E402
from harness.observe import json_lines  # noqa: E402
from harness.servers import start_hr_directory, start_knowledge_base, start_weather  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

ADDITION = ROOT / "demo" / "fleet-addition"
NEW = "knowledge-base"
FLEET = ("financial-data", "hr-directory", "weather")
BUILT_WITH = {
    "financial-data": "official Python SDK, demo/mcp_server.py",
    "hr-directory": "official Python SDK, demo/servers/hr_directory.py",
    "weather": "official TypeScript SDK v1, demo/servers/weather/server.mjs",
    NEW: "official Python SDK, demo/servers/knowledge_base.py",
}
VERSIONS = {"financial-data": "1.3.2", "hr-directory": "0.4.0", "weather": "2.0.1", NEW: "1.0.0"}
# One call per server, with arguments its registered schema accepts.
CALLS = {
    "financial-data": ("get_account_balance", {"account_id": "acc-001"}),
    "hr-directory": ("find_employee", {"query": "engineer"}),
    "weather": ("get_forecast", {"city": "Oslo", "days": 2}),
    NEW: ("search_articles", {"query": "finance"}),
}

# The agent and the user it acts for; the token carries every server's read scope,
# knowledge-base's included: registration, not a new token, is what opens it.
AGENT, USER = "ops-assistant", "alice"
READ_ALL = " ".join(f"mcp.server.{s}:tools.read" for s in (*FLEET, NEW))
TOKEN = token(AGENT, READ_ALL, user=USER)

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def title(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def note(text: str) -> None:
    print(f"  {DIM}{text}{RESET}")


def short(text: str, width: int = 96) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def client(url: str, statuses: list | None = None, bearer: str = TOKEN) -> Client:
    """Official SDK client sending the agent's bearer token, in the SDK's default mode:
    2026-07-28 where the server speaks it, else the initialize handshake (weather's v1
    SDK negotiates 2025-11-25). With `statuses`, records (status, Retry-After) of every
    HTTP answer."""
    http = create_mcp_http_client(headers={"authorization": f"Bearer {bearer}"})
    if statuses is not None:

        async def record(response):
            statuses.append((response.status_code, response.headers.get("retry-after")))

        http.event_hooks["response"].append(record)
    return Client(streamable_http_client(url, http_client=http), mode="auto")


def server_saw(header_log: Path, tool: str) -> None:
    """The headers the server got with the call of `tool` (its own header log)."""
    calls = [dict(r["headers"]) for r in json_lines(header_log) if dict(r["headers"]).get("x-mcp-tool-name") == tool]
    if not calls:
        raise RuntimeError(f"{header_log.name}: no request labelled with {tool}")
    headers = calls[-1]
    shown = ("x-mcp-server-id", "x-mcp-tool-name", "x-agent-id", "x-user-id")
    labels = ", ".join(f"{k}: {headers[k]}" for k in shown if k in headers)
    print(f"  server saw  {labels}")
    credential = headers.get("authorization")
    if credential is None:
        note("            no authorization header: no upstream credential registered, the client's token stripped")
    elif credential == f"Bearer {TOKEN}":
        raise RuntimeError(f"the client's token reached {header_log.name}")
    else:
        note(f"            authorization: {credential[:18]}... (the registered upstream credential, not the client's token)")


def audit_line(fleet: Fleet, server: str, tool: str) -> dict:
    """The audit record of the server's call of `tool` (Envoy's access log, flushed every 200 ms)."""

    def mine(records):
        return [r for r in records if r["server_id"] == server and r["tool_name"] == tool and r["method"] == "tools/call"]

    records = mine(audit_records(fleet.audit_path, until=lambda rs: mine(rs)))
    if not records:
        raise RuntimeError(f"no audit record of {server}'s {tool}")
    record = records[-1]
    print(
        f"  audit       server_id={record['server_id']} server_version={record['server_version']}"
        f" tool={record['tool_name']} decision={record['decision']} output_status={record['output_status']}"
        f" agent_id={record['agent_id']} protocol={record['protocol_version']}"
    )
    return record


def metric_line(fleet: Fleet, server: str, tool: str) -> None:
    """The filter's per-server counter for the call, from Envoy's /stats/prometheus."""

    def found(samples):
        return [
            (labels, value)
            for (name, labels), value in samples.items()
            if name == "mcp_tool_calls_total" and value and {("mcp_server", server), ("mcp_tool", tool)} <= labels
        ]

    samples = found(prometheus_when(fleet.envoy.admin_port, found))
    if not samples:
        raise RuntimeError(f"no mcp_tool_calls_total sample for {server}'s {tool}")
    labels, value = samples[0]
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
    print(f"  metric      mcp_tool_calls_total{{{shown}}} {value:g}")


async def use_server(url: str, tool: str, arguments: dict) -> None:
    async with client(url) as session:
        tools = await session.list_tools()
        print(f"  connected   protocol {session.protocol_version}")
        print(f"  tools/list  {', '.join(t.name for t in tools.tools)}")
        result = await session.call_tool(tool, arguments)
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {result.content}")
        print(f"  tools/call  {tool} {json.dumps(arguments)}")
        print(f"           -> {short(result.content[0].text)}")


def show_server(fleet: Fleet, server: str, header_log: Path) -> None:
    tool, arguments = CALLS[server]
    title(f"{server} {VERSIONS[server]} ({BUILT_WITH[server]}) at {fleet.url(server)}")
    anyio.run(use_server, fleet.url(server), tool, arguments)
    server_saw(header_log, tool)
    audit_line(fleet, server, tool)
    metric_line(fleet, server, tool)


def modern_call(tool: str, arguments: dict, request_id: int) -> tuple[dict, list[tuple[str, str]]]:
    """A 2026-07-28 tools/call and the headers a compliant client mirrors."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta}}
    headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream"),
               ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)]
    return body, headers


def refused(port: int, path: str, tool: str, arguments: dict, request_id: int, bearer: str | None) -> int:
    """Sends one call; prints the status, the challenge and the JSON-RPC error."""
    body, headers = modern_call(tool, arguments, request_id)
    if bearer:
        headers.append(("authorization", f"Bearer {bearer}"))
    response = request(port, "POST", path, body, headers)
    error = response.json().get("error", {}) if response.body.startswith(b"{") else {}
    message = short(str(error.get("message")), 70)
    print(f"  POST {path} tools/call {tool} -> HTTP {response.status}, JSON-RPC {error.get('code')}: {message}")
    challenge = response.header("www-authenticate")
    if challenge:
        print(f"     WWW-Authenticate: {short(challenge, 150)}")
    return response.status


def refusals(fleet: Fleet, seen: dict[str, Path]) -> None:
    port = fleet.port
    before = {server: len(json_lines(path)) for server, path in seen.items()}
    title("What the gateway refuses")
    refused(port, "/financial-data/mcp", "get_account_balance", {"account_id": "acc-001"}, 1, None)
    note("no token: 401, and the challenge says where to find the authorization server")
    transfer = {"from_account": "acc-001", "to_account": "acc-002", "amount": 1e6}
    refused(port, "/financial-data/mcp", "transfer_funds", transfer, 2, TOKEN)
    note("financial-data's manifest asks mcp.server.financial-data:tools.write for transfer_funds: 403 names it")
    refused(port, "/financial-data/mcp", "get_forecast", {"city": "Oslo"}, 3, TOKEN)
    note("weather's tool through financial-data's route: financial-data's policy does not know it")
    refused(port, "/payments/mcp", "get_account_balance", {"account_id": "acc-001"}, 4, TOKEN)
    note("no server registered at /payments/mcp: 404, never a default route to some upstream")
    after = {server: len(json_lines(path)) for server, path in seen.items()}
    print(f"  the servers got {sum(after.values()) - sum(before.values())} of these requests")

    title("weather's manifest: get_alerts 5 per second per agent; the agent loops")
    statuses: list[tuple[int, str | None]] = []

    async def loop() -> list[str]:
        outcomes = []
        async with client(fleet.url("weather"), statuses) as session:
            # 12 calls in well under a second meet at most two windows, so at least 2
            # are refused; on a slow machine the loop goes on until 2 are (at most 40).
            def denied() -> int:
                return len(outcomes) - outcomes.count("ok")

            while len(outcomes) < 12 or (denied() < 2 and len(outcomes) < 40):
                try:
                    await session.call_tool("get_alerts", {"region": "NO"})
                    outcomes.append("ok")
                except Exception as error:  # the SDK raises the gateway's JSON-RPC error
                    outcomes.append(short(str(error), 110))
        return outcomes

    outcomes = anyio.run(loop)
    limited = [(status, retry) for status, retry in statuses if status == 429]
    print(f"  {len(outcomes)} calls: {outcomes.count('ok')} answered, {len(limited)} refused")
    if outcomes.count("ok") > 5:
        note("(the loop crossed into a next second, whose window let more through)")
    if not limited:
        raise RuntimeError(f"no get_alerts call was rate limited: {outcomes}")
    print(f"  first refusal: HTTP 429, Retry-After: {limited[0][1]}; the SDK raised:")
    print(f"     {next(o for o in outcomes if o != 'ok')}")


def server_info(admin_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/server_info", timeout=5) as response:
        return json.loads(response.read())


def xds_updates(admin_port: int) -> tuple[int, int]:
    """How often Envoy applied its watched cluster and route files (CDS, RDS)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=update_success$", timeout=5) as response:
        stats = dict(line.split(": ") for line in response.read().decode().splitlines())
    routes = next(int(v) for k, v in stats.items() if k.startswith("http.") and ".rds." in k)
    return int(stats["cluster_manager.cds.update_success"]), routes


def register_live(fleet: Fleet, logs: Path, header_log: Path, started: list, envoy_started: float) -> None:
    title(f"Registering a fourth server live: {NEW} ({BUILT_WITH[NEW]})")
    process, port = start_knowledge_base(logs, header_log=header_log)
    started.append(process)
    print(f"  {NEW} is up on 127.0.0.1:{port}, not registered yet:")
    status = refused(fleet.port, f"/{NEW}/mcp", *CALLS[NEW], 10, TOKEN)
    assert status == 404, status

    envoy = fleet.envoy
    info, updates = server_info(envoy.admin_port), xds_updates(envoy.admin_port)
    print(f"  Envoy PID {envoy.pid}, up {info['uptime_current_epoch']}; CDS/RDS updates applied: {updates[0]}/{updates[1]}")

    print(f"  $ cp demo/fleet-addition/{NEW}.yaml demo/fleet-addition/schemas/* <fleet>  (endpoint set to 127.0.0.1:{port})")
    shutil.copytree(ADDITION / "schemas", fleet.manifests / "schemas", dirs_exist_ok=True)
    (fleet.manifests / f"{NEW}.yaml").write_text(manifest_text(NEW, port, ADDITION))
    print("  $ mcp-registry render <fleet> --out <rendered> --allow-loopback-endpoints")
    started_at = time.monotonic()
    wrote = fleet.render()
    for line in wrote.splitlines():
        print(f"    {line.replace(str(fleet.out), '<rendered>')}")
    if "bootstrap.yaml" not in wrote:
        note("envoy/bootstrap.yaml unchanged, so not rewritten: Envoy reads the clusters and routes files it watches")

    # Envoy reloads the watched files, the authz-service and the ratelimit-service
    # theirs: serving once all three have.
    body, headers = modern_call("get_article", {"article_id": "kb-101"}, 11)
    headers.append(("authorization", f"Bearer {TOKEN}"))
    meanwhile: list[int] = []

    def serving() -> bool:
        meanwhile.append(request(fleet.port, "POST", f"/{NEW}/mcp", body, headers).status)
        return meanwhile[-1] == 200

    wait_until(serving, timeout=20, interval=0.05)
    print(f"  serving through the gateway {time.monotonic() - started_at:.1f} s after render")
    if len(meanwhile) > 1:
        # Each of the three reloads its own file: for a moment Envoy may route to the
        # new server before the authz-service knows it (403), or not yet (404).
        why = {404: "Envoy had no route yet", 403: "the authz-service had not read the new policy yet"}
        waited = Counter(meanwhile[:-1])
        note("while Envoy and the services reloaded: "
             + "; ".join(f"{n} x HTTP {s} ({why.get(s, 'unexpected')})" for s, n in sorted(waited.items())))

    show_server(fleet, NEW, header_log)

    envoy.check_alive()
    after, updated = server_info(envoy.admin_port), xds_updates(envoy.admin_port)
    uptime, elapsed = uptime_seconds(after["uptime_current_epoch"]), time.monotonic() - envoy_started
    print(f"  Envoy PID {envoy.pid}, up {uptime}s; CDS/RDS updates applied: {updated[0]}/{updated[1]}")
    # A restarted Envoy would have a new PID (the harness runs it with hot restart
    # disabled) and an uptime counted from its restart, shorter than the demo has run.
    kept = uptime >= int(elapsed) - 1 and all(now > then for now, then in zip(updated, updates))
    if not kept:
        raise RuntimeError(f"Envoy restarted? server_info {info} -> {after}, CDS/RDS updates {updates} -> {updated}")
    print(f"  {BOLD}Envoy was not restarted{RESET}: same PID {envoy.pid}, up {uptime}s since it started {elapsed:.0f}s ago;"
          " the new cluster and route came from the watched files")


def who_sees_what(fleet: Fleet) -> None:
    """Per-caller lists, and a call whose arguments break the registered schema."""
    title("What each agent is shown: tools/list filtered by what its token may call")
    payments = "payments-agent"
    agents = (
        (AGENT, TOKEN, "tools.read"),
        (payments, token(payments, f"{READ_ALL} mcp.server.financial-data:tools.write", user=USER),
         "tools.read + financial-data's tools.write"),
    )

    async def names(bearer: str) -> list[str]:
        async with client(fleet.url("financial-data"), bearer=bearer) as session:
            return [t.name for t in (await session.list_tools()).tools]

    for agent, bearer, scopes in agents:
        print(f"  {agent:15} {scopes:42} tools/list  {', '.join(anyio.run(names, bearer))}")
    record = audit_records(
        fleet.audit_path,
        until=lambda rs: any(r["method"] == "tools/list" and r["agent_id"] == AGENT and r["server_id"] == "financial-data" for r in rs),
    )
    hidden = [r for r in record if r["method"] == "tools/list" and r["agent_id"] == AGENT and r["server_id"] == "financial-data"][-1]
    print(f"  audit       {AGENT}'s tools/list: hidden_entries={hidden['hidden_entries']}")
    note("transfer_funds is listed only for the agent that may call it (cacheScope private: no shared cache keeps one agent's list)")

    title("query_transactions with limit 0: its registered schema says at least 1 (validation: report)")
    body, headers = modern_call("query_transactions", {"account_id": "acc-001", "limit": 0}, 90)
    headers.append(("authorization", f"Bearer {TOKEN}"))
    response = request(fleet.port, "POST", "/financial-data/mcp", body, headers)
    print(f"  POST /financial-data/mcp tools/call query_transactions {{\"limit\": 0}} -> HTTP {response.status}"
          " (forwarded: report mode)")

    def flagged(records):
        return [r for r in records if r["jsonrpc_id"] == 90 and r["schema_violation"]]

    record = flagged(audit_records(fleet.audit_path, until=flagged))[-1]
    print(f"  audit       decision={record['decision']} schema_violation={record['schema_violation']!r}")
    note("with validation: enforce the gateway refuses it instead: HTTP 400, JSON-RPC -32602, never reaching the server")


def summary(fleet: Fleet) -> None:
    title("Audit trail by server and decision (one JSON record per MCP request)")
    # Envoy flushes its access log every 200 ms: read until nothing new arrives.
    records, previous = [], -1
    while len(records) != previous:
        previous = len(records)
        time.sleep(0.5)
        records = audit_records(fleet.audit_path, timeout=0)
    counts = Counter((r["server_id"] or "(unregistered)", r["decision"]) for r in records)
    for server in sorted({s for s, _ in counts}):
        decisions = ", ".join(f"{d} {n}" for (s, d), n in sorted(counts.items()) if s == server)
        print(f"  {server:16} {decisions}")


def uptime_seconds(text: str) -> int:
    return int(text.rstrip("s"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mcp-gateway-demo-") as tmp:
        logs = Path(tmp)
        seen = {server: logs / f"seen-{server}.jsonl" for server in (*FLEET, NEW)}
        started, fleet = [], None
        try:
            ports = {}
            for server, start in (
                ("financial-data", lambda: start_mcp_server(logs, seen["financial-data"])),
                ("hr-directory", lambda: start_hr_directory(logs, header_log=seen["hr-directory"])),
                ("weather", lambda: start_weather(logs, header_log=seen["weather"])),
            ):
                process, ports[server] = start()
                started.append(process)
            fleet = Fleet(logs, ports)
            envoy_started = time.monotonic()
            print(f"{BOLD}MCP gateway demo: a fleet behind one Envoy{RESET}")
            print(f"  manifests   registry/examples: {', '.join(FLEET)} (endpoints on loopback ports)")
            rendered = sorted(str(p.relative_to(fleet.out)) for p in fleet.out.rglob("*") if p.is_file())
            # What this demo's processes read, and what a Kubernetes/Istio deployment would.
            deployments = sorted(
                {r.split("/")[0] + "/" for r in rendered if r.startswith(("istio/", "kubernetes/", "monitoring/"))}
            )
            local = [r for r in rendered if r.split("/")[0] + "/" not in deployments]
            print(f"  rendered    {', '.join(local)} (and {', '.join(deployments)} for deployments)")
            print(f"  running     Envoy :{fleet.port} (PID {fleet.envoy.pid}) on envoy/*.yaml, authz-service on"
                  " policy.yaml and schemas.json, ratelimit-service on limits/")
            print(f"  client      official Python SDK as {AGENT} acting for {USER},"
                  f" token scope tools.read on {', '.join((*FLEET, NEW))}")

            for server in FLEET:
                show_server(fleet, server, seen[server])
            refusals(fleet, seen)
            who_sees_what(fleet)
            register_live(fleet, logs, seen[NEW], started, envoy_started)
            summary(fleet)
            print(f"\n{BOLD}Done.{RESET} Every process is stopped by PID; logs were in {logs}.")
            return 0
        except Exception as error:  # show the logs that explain a failure
            print(f"\ndemo failed: {error!r}", file=sys.stderr)
            for proc in [*(fleet.envoy, fleet.authz, fleet.ratelimit)] if fleet else []:
                print(f"--- {proc.name} log ---\n{proc.log()[-3000:]}", file=sys.stderr)
            for proc in started:
                print(f"--- {proc.name} log ---\n{proc.log()[-2000:]}", file=sys.stderr)
            return 1
        finally:
            if fleet is not None:
                fleet.stop()
            for proc in started:
                proc.stop()


if __name__ == "__main__":
    sys.exit(main())
