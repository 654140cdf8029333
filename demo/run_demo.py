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
5. Before traffic: `mcp-registry preflight` runs the pre-production checklist on
   financial-data through the gateway (tokens minted with the key the demo's
   authz-service trusts, a key rotation published into its JWKS file, the audit record
   found in the gateway's audit file, a 2 s load at 10x the manifest's expected calls).
6. A canary that fails is rolled back: financial-data 1.4.0 (this server with
   --fail-tools) registered as a 50 % canary, `mcp-registry canary watch` on Envoy's
   metrics rolls it back to 0 % on its tool-call error ratio, and the next calls all
   succeed on 1.3.2.

Run it with scripts/demo.sh (which installs and builds everything first). Every
process it starts is stopped by PID when it ends, also when it fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import anyio
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import Process, audit_records, prometheus_when, python, request, start_mcp_server, token, wait_for_http, wait_until  # noqa: E402
from harness.authz import ISSUER, KID, RESOURCE, signing_key  # noqa: E402
from harness.fleet import Fleet, manifest_text, route_list  # noqa: E402
from harness.procs import dispatch_log, free_port  # noqa: E402
from harness.registry import REGISTRY  # noqa: E402
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


def edit_manifest(fleet: Fleet, server: str, change) -> None:
    """Changes the fleet copy's manifest of `server` (`change(manifest)`, in place)."""
    path = fleet.manifests / f"{server}.yaml"
    manifest = yaml.safe_load(path.read_text())
    change(manifest)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def preflight_config(fleet: Fleet, logs: Path) -> Path:
    """The platform's preflight.yaml for this gateway: tokens minted with the key the
    demo's authz-service trusts (its issuer and audience), a next key published into
    that service's own JWKS file for the rotation check (preflight restores the file),
    the gateway's audit file as the sink."""
    (logs / "signing.pem").write_bytes(pem(signing_key()))
    (logs / "next.pem").write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    # Where the harness's Authz keeps the JWKS file the service reads (--jwks-file).
    jwks = logs / f"authz-{fleet.authz.grpc_port}-jwks.json"
    config = {
        "mint": {"key_file": "signing.pem", "kid": KID, "issuer": ISSUER, "audience": RESOURCE, "ttl": "300s"},
        "rotation": {"next_key_file": "next.pem", "next_kid": "demo-next", "publish": {"jwks_file": str(jwks)}},
        "audit": {"file": str(fleet.audit_path), "wait": "10s"},
        "load": {"max_in_flight": 32, "request_timeout": "5s", "direct_samples": True},
    }
    path = logs / "preflight.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def preflight(fleet: Fleet, logs: Path) -> None:
    server = "financial-data"
    title(f"Before traffic: mcp-registry preflight, the pre-production checklist, on {server}")
    print("  manifest    expected_calls 120/minute, preflight_call get_account_balance; the platform's test agents"
          " have limits of their own (preflight-ratelimit 3/second, preflight-load 50/second)")
    config = preflight_config(fleet, logs)
    print("  preflight.yaml  mint: the demo's signing key, kid, issuer, audience; rotation: a next key into"
          " the authz-service's JWKS file; audit: Envoy's audit file")
    report_json, report_md = logs / "preflight-financial-data.json", logs / "preflight-financial-data.md"
    argv = [
        str(REGISTRY), "preflight", str(fleet.manifests), "--server", server,
        "--gateway", f"http://127.0.0.1:{fleet.port}", "--config", str(config), "--rendered", str(fleet.out),
        "--admin", f"http://127.0.0.1:{fleet.envoy.admin_port}", "--load-duration", "2s",
        "--report-json", str(report_json), "--report-md", str(report_md), "--allow-loopback-endpoints",
    ]
    print(f"  $ mcp-registry preflight <fleet> --server {server} --gateway http://127.0.0.1:{fleet.port}"
          " --config preflight.yaml --rendered <rendered> --admin <envoy admin> --load-duration 2s"
          " --report-json ... --report-md ...")
    jwks = logs / f"authz-{fleet.authz.grpc_port}-jwks.json"
    trusted = jwks.read_text()
    started_at = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - started_at
    for line in done.stdout.replace(str(logs), "<logs>").splitlines():
        # Its own layout (status, step, name in columns), cut to the demo's width.
        print(f"    {line if len(line) <= 150 else line[:147] + '...'}")
    if done.returncode != 0:
        raise RuntimeError(f"preflight exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}")
    report = json.loads(report_json.read_text())
    checks = {(s["name"], c["name"]): c for s in report["steps"] for c in s["checks"]}
    if jwks.read_text() != trusted:
        raise RuntimeError(f"preflight left {jwks.name} changed")
    print(f"  rotation    {checks[('auth', 'rotation')]['detail']} (the JWKS file is back as it was)")
    print(f"  rate limit  preflight-ratelimit over 3/second: {checks[('rate_limit', 'live')]['detail'].split(': ', 1)[-1]}")
    load = next(s for s in report["steps"] if s["name"] == "load")["data"]["load"]
    latency, added = load["latency_ms"], load["gateway_added_ms"]
    print(f"  load        {load['sent']} calls at {load['rate_per_second']:g}/s (10x expected) in 2 s: {load['errors']} errors,"
          f" p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
    if added["method"].startswith("paired") and added["p50"] is not None:
        bound = added["upper_bound"]["p50"]
        within = f" (at most {bound:.1f} ms by Envoy's upstream time)" if bound is not None else ""
        note(f"            gateway added p50 {added['p50']:.1f} ms by {added['direct_samples']} paired calls straight to the"
             f" server{within}")
    for (step, name), check in checks.items():
        if check["status"] == "skip":
            print(f"  skipped     {step}/{name}: {check['detail']}")
    rows = sum(1 for line in report_md.read_text().splitlines() if re.match(r"^\| \d \| \w+ \| PASS \|", line))
    print(f"  exit 0 in {elapsed:.0f} s; reports <logs>/{report_json.name} (result: {report['result']}),"
          f" <logs>/{report_md.name} ({rows} PASS rows)")


CANARY = "1.4.0"
WINDOW, MIN_CALLS = 10, 5


def canary_weights(fleet: Fleet, server: str) -> tuple[int, int]:
    """(stable, canary) weights of the server's rendered route."""
    (route,) = [r for r in route_list(fleet.out / "envoy" / "routes.yaml") if r.get("name") == f"mcp-server/{server}"]
    clusters = {c["name"]: c["weight"] for c in route["route"]["weighted_clusters"]["clusters"]}
    return clusters[f"mcp-server/{server}"], clusters[f"mcp-server/{server}/canary"]


def canary(fleet: Fleet, logs: Path, started: list) -> None:
    server, stable = "financial-data", VERSIONS["financial-data"]
    title(f"A canary that fails is rolled back: {server} {CANARY} next to {stable}")
    port = free_port()
    header_log = logs / f"seen-{server}-{CANARY}.jsonl"
    argv = [python(), str(ROOT / "demo" / "mcp_server.py"), "--port", str(port), "--fail-tools",
            "--header-log", str(header_log), "--dispatch-log", str(dispatch_log(header_log))]
    broken = Process(f"{server}-{CANARY}-{port}", argv, logs)
    started.append(broken)
    wait_for_http(port, "/mcp", process=broken)
    print(f"  {server} {CANARY} is up on 127.0.0.1:{port} (PID {broken.pid}; demo/mcp_server.py --fail-tools:"
          " every tools/call answers isError)")
    watch = {"window": f"{WINDOW}s", "min_calls": MIN_CALLS}
    edit_manifest(fleet, server, lambda m: m["gateway"].update(
        canary={"version": CANARY, "endpoint": f"http://127.0.0.1:{port}/mcp", "weight": 50, "watch": watch}))
    fleet.render()
    print(f"  fleet copy  gateway.canary: {{version: {CANARY}, weight: 50, watch: {{window: {WINDOW}s, min_calls: {MIN_CALLS}}}}}; render")
    print(f"  rendered    weighted_clusters {server} {stable} / {CANARY}: {'/'.join(map(str, canary_weights(fleet, server)))}")

    argv = [str(REGISTRY), "canary", "watch", str(fleet.manifests), "--out", str(fleet.out),
            "--credentials-dir", str(fleet.rendered.credentials), "--allow-loopback-endpoints",
            "--envoy-admin", f"http://127.0.0.1:{fleet.envoy.admin_port}", "--interval", "1s"]
    watcher = Process("canary-watch", argv, logs)
    started.append(watcher)

    def events(kind: str) -> list[dict]:
        lines = [json.loads(line) for line in watcher.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == kind]

    # The watcher's window starts at its first scrape: calls from then on count.
    wait_until(lambda: watcher.check_alive() or events("wait"), timeout=15)
    print(f"  $ mcp-registry canary watch <fleet> --out <rendered> --envoy-admin <envoy admin> --interval 1s  (PID {watcher.pid})")
    print(f"  watcher     wait: {events('wait')[0]['reason']}")

    def call(request_id: int) -> bool:
        """One get_account_balance through the gateway; True if it answered without isError."""
        body, headers = modern_call("get_account_balance", {"account_id": "acc-001"}, request_id)
        headers.append(("authorization", f"Bearer {TOKEN}"))
        response = request(fleet.port, "POST", f"/{server}/mcp", body, headers)
        answer = response.json() if response.status == 200 and response.body.startswith(b"{") else {}
        return "result" in answer and not answer["result"].get("isError")

    first_id = request_id = 1000
    outcomes: list[bool] = []
    calls_started = time.monotonic()
    deadline = calls_started + WINDOW + 10
    while not events("rollback"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no rollback within {WINDOW + 10} s:\n{watcher.log()[-2000:]}")
        outcomes.append(call(request_id))
        request_id += 1
        time.sleep(0.05)
    took = time.monotonic() - calls_started
    print(f"  {len(outcomes)} calls at 50/50: {outcomes.count(True)} answered, {outcomes.count(False)} isError;"
          f" rolled back {took:.1f} s after the first (window {WINDOW} s)")
    line = events("rollback")[0]
    shown = {k: line[k] for k in ("event", "server", "canary", "stable", "signal", "canary_value", "stable_value", "weight")}
    print(f"  watcher     {json.dumps(shown)}")
    print(f"              reason: {line['reason']}")
    weights = canary_weights(fleet, server)
    state = json.loads((fleet.out / "rollout" / "state.json").read_text())[server]
    print(f"  rendered    weighted_clusters {server} {stable} / {CANARY}: {'/'.join(map(str, weights))};"
          f" rollout/state.json: {state['state']}, weight {state['weight']}")
    if weights != (100, 0):
        raise RuntimeError(f"the rollback did not render weight 0: {weights}")

    # Envoy applies the re-rendered routes within milliseconds; give it a moment.
    time.sleep(0.5)
    canary_before = len(json_lines(header_log))
    after_ids = range(request_id, request_id + 20)
    after = [call(i) for i in after_ids]
    canary_got = len(json_lines(header_log)) - canary_before
    print(f"  next {len(after)} calls: {after.count(True)} answered, {after.count(False)} isError;"
          f" {CANARY}'s own log got {canary_got} of them")
    if not all(after) or canary_got:
        raise RuntimeError(f"calls after the rollback: {after}, {canary_got} reached the canary")

    wanted = set(range(first_id, after_ids.stop))

    def mine(records):
        return [r for r in records if r["server_id"] == server and r["jsonrpc_id"] in wanted]

    records = mine(audit_records(fleet.audit_path, until=lambda rs: len(mine(rs)) >= len(wanted)))
    counts = Counter((r["server_version"], r["output_status"]) for r in records)
    print("  audit       " + ", ".join(f"server_version={v} output_status={o}: {n}" for (v, o), n in sorted(counts.items())))
    late = [r for r in records if r["jsonrpc_id"] in after_ids]
    if len(late) != len(after_ids) or any((r["server_version"], r["output_status"]) != (stable, "success") for r in late):
        raise RuntimeError(f"audit records of the calls after the rollback: {late}")
    watcher.stop()


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
            preflight(fleet, logs)
            canary(fleet, logs, started)
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
