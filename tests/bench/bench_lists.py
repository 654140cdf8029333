"""Per-caller lists and argument validation (issue 16): Envoy's CPU per request for a
filtered `tools/list` of 10 and of 500 tools (JSON and SSE answers) and for a validated
`tools/call` (small and 16 KiB arguments), side by side with the unfiltered and
unvalidated paths, in bench_envoy.py's method (BENCHMARKS.md, "Per-caller lists and
argument validation").

The fleet (tests/bench/list_fleet.py) is rendered by the real `mcp-registry render`
twice, from manifests that differ only in `gateway.validation`: two servers
(/bench-tools-10/mcp, /bench-tools-500/mcp), each tool with a ~330-byte registered
schema; the benchmark token may call half of the tools. Every chain arm is the full
chain (wasm filter, ext_authz with the authz-service, ratelimit with the memory store):
  chain-unfiltered - validation off (no body to ext_authz), the filter's
                     `list_filtering: off` and no `schema_digests` on the routes (no
                     drift check): the lists pass as the server wrote them
  chain-drift      - the same with the routes' `schema_digests` as rendered: the
                     unfiltered list is read for the drift check (every advertised
                     inputSchema digested), not rewritten
  chain-filtered   - as rendered with validation enforce: lists filtered by the
                     authz decision's allowed_tools (cacheScope private) and checked
                     for drift; tools/call bodies sent to ext_authz and the arguments
                     validated by the authz-service
Not run by default (`--arms ...,chain-before --baseline-wasm old.wasm`):
  chain-before     - chain-unfiltered's config (validation off, no digests, without
                     the `list_filtering` key) with the filter of another build, e.g.
                     one from before per-caller lists, which did not read list answers
and, for scale, what Envoy alone spends moving the same bytes:
  bare             - router only (the off render without its filters, side calls and
                     audit log), as bench_envoy.py's bare arm

Each arm's Envoy is checked before it is measured: list answers hold the tools the
arm should show (all, or the allowed half and private), the calls are answered, a
call with invalid arguments is refused with -32602 exactly where validation is on,
and no drift is counted.

Payloads: list-10-json, list-10-sse, list-500-json, list-500-sse (tools/list answered
with 10 or 500 tools, as one JSON body or one SSE event), call-small and call-16KiB
(tools/call on the 10-tool server; the 16 KiB arguments are bench_envoy.arguments(),
which the tool's registered schema admits).

Per arm and payload: a 1 s warm-up, then a closed-loop run (16 connections) gives
Envoy's CPU per request (utime + stime from /proc over requests answered), the
throughput and the services' CPU per decision. Envoy (--concurrency 1) is pinned to
CPU 0, oha and the upstream to CPU 1, the services float. Arms interleaved over
rounds; medians and [min, max].

    .venv/bin/python tests/bench/bench_lists.py [--rounds 3] [--seconds 5] \
        [--arms ...] [--payloads ...] [--out target/bench/lists.json] [--print]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_envoy  # noqa: E402
import list_fleet  # noqa: E402
from bench_envoy import ENVOY_CPU, OTHERS_CPU, VERSION, answered, cpu_seconds, machine, pin, run_oha  # noqa: E402
from harness import Authz, Process, Ratelimit, envoy_counter, free_port, python, routes, start_gateway, token  # noqa: E402
from harness.observe import prometheus  # noqa: E402
from harness.procs import ROOT, wait_for_http  # noqa: E402
from harness.registry import render  # noqa: E402

HERE = Path(__file__).resolve().parent
ARMS = ("bare", "chain-unfiltered", "chain-drift", "chain-filtered")
EXTRA_ARMS = ("chain-before",)
PAYLOADS = ("list-10-json", "list-10-sse", "list-500-json", "list-500-sse", "call-small", "call-16KiB")
SSE_META = "bench.example/answer"
CALL_SERVER = "bench-tools-10"


def payload(name: str) -> tuple[bytes, str, str | None, str]:
    """(body, MCP method, tool name, server id) of a request; every id is 1."""
    meta = {"io.modelcontextprotocol/protocolVersion": VERSION}
    if name.startswith("list-"):
        _, count, framing = name.split("-")
        if framing == "sse":
            meta[SSE_META] = "sse"
        server = f"bench-tools-{count}"
        method, tool, params = "tools/list", None, {"_meta": meta}
    else:
        server, method = CALL_SERVER, "tools/call"
        tool, args = {
            "call-small": (list_fleet.SMALL_TOOL, {"account_id": "acc-001"}),
            "call-16KiB": (list_fleet.BULK_TOOL, bench_envoy.arguments(16 * 1024)),
            # Not measured: the call each arm's check sends, refused where validation is on.
            "call-invalid": (list_fleet.SMALL_TOOL, {"account_id": 7}),
        }[name]
        params = {"name": tool, "arguments": args, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return json.dumps(body, separators=(",", ":")).encode(), method, tool, server


def headers(method: str, tool: str | None, bearer: str) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", VERSION),
        ("mcp-method", method),
        ("authorization", bearer),
    ] + ([("mcp-name", tool)] if tool else [])


class Fleet:
    """The two renders (validation off / enforce) and the processes every arm shares:
    the upstream (pinned with oha), one authz-service per render (each with that
    render's policy and schemas), one ratelimit-service (memory store)."""

    def __init__(self, work: Path):
        self.started: list[Process] = []
        try:
            self.upstream_port = free_port()
            self.rendered = {}
            for validation in ("off", "enforce"):
                manifests = work / f"manifests-{validation}"
                list_fleet.generate(manifests, self.upstream_port, validation)
                render(manifests, work / f"rendered-{validation}", work / f"credentials-{validation}")
                self.rendered[validation] = work / f"rendered-{validation}"
            upstream = self._add(Process("upstream", [python(), str(HERE / "fast_upstream.py"), str(self.upstream_port)], work))
            pin(upstream.pid, OTHERS_CPU)
            wait_for_http(self.upstream_port, "/", process=upstream)
            self.authz = {
                validation: self._add(Authz(work, policy=rendered / "policy.yaml", schemas=rendered / "schemas.json"))
                for validation, rendered in self.rendered.items()
            }
            self.ratelimit = self._add(Ratelimit(work, config=self.rendered["off"] / "limits" / "limits.yaml"))
        except BaseException:
            self.stop()
            raise

    def _add(self, process):
        self.started.append(process)
        return process

    @staticmethod
    def validation(arm: str) -> str:
        return "enforce" if arm == "chain-filtered" else "off"

    def start_envoy(self, arm: str, logs: Path, baseline_wasm: Path | None = None):
        validation = self.validation(arm)
        upstreams = {f"mcp-server/{sid}": self.upstream_port for sid in list_fleet.SERVERS}
        upstreams.update(self.authz[validation].upstreams())
        upstreams.update(self.ratelimit.upstreams())

        def mutate(config: dict) -> None:
            if arm == "bare":
                bench_envoy.arm_config("bare")(config)
            if arm in ("chain-unfiltered", "chain-before"):
                for route in routes(config):
                    route.get("metadata", {}).get("filter_metadata", {}).get("mcp_gateway", {}).pop("schema_digests", None)

        overrides = {} if arm in ("chain-filtered", "chain-before") else {"list_filtering": "off"}
        source = self.rendered[validation] / "envoy" / "standalone.yaml"
        if arm != "chain-before":
            return start_gateway(logs, upstreams, source=source, filter_overrides=overrides, mutate=mutate)
        # The harness loads the .wasm named by MCP_FILTER_WASM (tests/harness/envoy.py).
        os.environ["MCP_FILTER_WASM"] = str(baseline_wasm)
        try:
            return start_gateway(logs, upstreams, source=source, mutate=mutate)
        finally:
            os.environ.pop("MCP_FILTER_WASM", None)

    def measured(self, arm: str) -> dict[str, Process]:
        if arm == "bare":
            return {}
        return {"authz": self.authz[self.validation(arm)], "ratelimit": self.ratelimit}

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()


def post(url: str, body: bytes, request_headers: list[tuple[str, str]]) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(request_headers))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def message(content_type: str, text: str) -> dict:
    """The JSON-RPC answer of a JSON body or of an SSE stream (its last data event)."""
    if content_type.startswith("text/event-stream"):
        data = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
        return json.loads(data[-1])
    return json.loads(text)


def check_arm(arm: str, port: int, admin_port: int, bearer: str, payloads: list[str]) -> None:
    """What each arm must do, before any of it is measured (a mis-built arm would
    measure something else)."""
    filtered = arm == "chain-filtered"
    for name in payloads:
        body, method, tool, server = payload(name)
        status, answer_headers, text = post(f"http://127.0.0.1:{port}/{server}/mcp", body, headers(method, tool, bearer))
        assert status == 200, (arm, name, status, text[:500])
        kind = answer_headers.get("content-type", answer_headers.get("Content-Type", ""))
        assert kind.startswith("text/event-stream" if name.endswith("-sse") else "application/json"), (arm, name, kind)
        result = message(kind, text)["result"]
        if method == "tools/call":
            assert result["isError"] is False, (arm, name, result)
            continue
        count = list_fleet.SERVERS[server]
        names = [t["name"] for t in result["tools"]]
        expected = [n for i, n in enumerate(list_fleet.tool_names(count)) if not (filtered and list_fleet.needs_write(i))]
        assert names == expected, (arm, name, len(names), len(expected))
        private = result.get("_meta", {}).get("io.modelcontextprotocol/cacheScope") == "private" or result.get("cacheScope") == "private"
        assert private == filtered, (arm, name, {k: v for k, v in result.items() if k != "tools"})
    body, method, tool, server = payload("call-invalid")
    status, _, text = post(f"http://127.0.0.1:{port}/{server}/mcp", body, headers(method, tool, bearer))
    if filtered:
        assert status == 400 and json.loads(text)["error"]["code"] == -32602, (arm, status, text)
    else:
        assert status == 200, (arm, status, text)
    drift = {labels: v for (n, labels), v in prometheus(admin_port).items() if n == "mcp_schema_drift_total" and v}
    assert not drift, (arm, drift)


def ratelimit_decisions(admin_port: int) -> int:
    return sum(
        envoy_counter(admin_port, f"cluster.mcp-server/{sid}.ratelimit.{outcome}")
        for sid in list_fleet.SERVERS
        for outcome in ("ok", "over_limit")
    )


def bench_arm(arm: str, fleet: Fleet, logs: Path, bodies: dict, args, results: dict, bearer: str) -> None:
    envoy, port = fleet.start_envoy(arm, logs, args.baseline_wasm)
    try:
        pin(envoy.pid, ENVOY_CPU)
        check_arm(arm, port, envoy.admin_port, bearer, args.payloads)
        for name in args.payloads:
            url, body_file, request_headers = bodies[name]
            url = url.format(port=port)
            figures = results[arm][name]
            run_oha(url, body_file, request_headers, 1, None)  # warm up
            measured = fleet.measured(arm)
            before = {key: cpu_seconds(p.pid) for key, p in measured.items()}
            decisions_before = ratelimit_decisions(envoy.admin_port)
            envoy_before, start = cpu_seconds(envoy.pid), time.monotonic()
            report = run_oha(url, body_file, request_headers, args.seconds, None)
            envoy_used, elapsed = cpu_seconds(envoy.pid) - envoy_before, time.monotonic() - start
            count = answered(report)
            figures["envoy_cpu_us"].append(envoy_used * 1e6 / count)
            figures["max_rps"].append(count / args.seconds)
            figures["envoy_core_busy"].append(envoy_used / elapsed)
            for key, process in measured.items():
                figures.setdefault(f"{key}_cpu_us", []).append((cpu_seconds(process.pid) - before[key]) * 1e6 / count)
            line = f"{arm:16s} {name:13s} {figures['envoy_cpu_us'][-1]:7.1f} Envoy CPU-µs/req  {figures['max_rps'][-1]:6.0f} req/s"
            if measured:
                decided = ratelimit_decisions(envoy.admin_port) - decisions_before
                figures.setdefault("ratelimit_decisions_per_request", []).append(decided / count)
                line += f"  authz {figures['authz_cpu_us'][-1]:6.1f} µs/decision"
            print(line, flush=True)
    finally:
        envoy.stop()


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def ratio(values: list[float], base: list[float]) -> str:
    return f"{statistics.median(values) / statistics.median(base):.2f}x"


def tables(document: dict) -> str:
    """Markdown tables of a results document (the BENCHMARKS.md section's)."""
    results = document["results"]
    arms = [a for a in ARMS + EXTRA_ARMS if a in results]
    payloads = [p for p in PAYLOADS if p in results[arms[0]]]
    out = []
    for figure, title in (("envoy_cpu_us", "Envoy CPU per request (µs)"), ("authz_cpu_us", "authz-service CPU per decision (µs)")):
        out.append(f"#### {title}, median [min, max]\n")
        shown = [a for a in arms if figure in results[a][payloads[0]]]
        out.append("| payload | " + " | ".join(shown) + " |")
        out.append("|---" * (len(shown) + 1) + "|")
        for p in payloads:
            out.append(f"| {p} | " + " | ".join(cell(results[a][p].get(figure)) for a in shown) + " |")
        out.append("")
    base = "chain-unfiltered"
    others = [a for a in arms if a not in (base, "bare")]
    if base in results and others:
        out.append("#### Ratios of medians over chain-unfiltered\n")
        out.append("| payload | " + " | ".join(f"{a} Envoy" for a in others) + " | " + " | ".join(f"{a} authz" for a in others) + " |")
        out.append("|---" * (2 * len(others) + 1) + "|")
        for p in payloads:
            envoy = [ratio(results[a][p]["envoy_cpu_us"], results[base][p]["envoy_cpu_us"]) for a in others]
            authz = [ratio(results[a][p]["authz_cpu_us"], results[base][p]["authz_cpu_us"]) for a in others]
            out.append(f"| {p} | " + " | ".join(envoy + authz) + " |")
        out.append("")
    out.append("#### Throughput (requests/s, closed loop) and Envoy's core busy\n")
    out.append("| payload | " + " | ".join(arms) + " |")
    out.append("|---" * (len(arms) + 1) + "|")
    for p in payloads:
        out.append(
            f"| {p} | "
            + " | ".join(
                f"{statistics.median(results[a][p]['max_rps']):.0f} ({100 * statistics.median(results[a][p]['envoy_core_busy']):.0f}%)"
                for a in arms
            )
            + " |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--payloads", default=",".join(PAYLOADS))
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench" / "lists.json")
    parser.add_argument("--baseline-wasm", type=Path, help="the .wasm of the chain-before arm")
    parser.add_argument("--print", action="store_true", help="only print the tables of --out")
    args = parser.parse_args()
    if args.print:
        print(tables(json.loads(args.out.read_text())), end="")
        return
    args.arms = [a for a in args.arms.split(",") if a]
    args.payloads = [p for p in args.payloads.split(",") if p]
    for value, known in ((args.arms, ARMS + EXTRA_ARMS), (args.payloads, PAYLOADS)):
        unknown = set(value) - set(known)
        if unknown:
            parser.error(f"unknown {sorted(unknown)}; known: {', '.join(known)}")
    if "chain-before" in args.arms and not (args.baseline_wasm and args.baseline_wasm.exists()):
        parser.error("the chain-before arm needs --baseline-wasm pointing at a built .wasm")

    logs = Path(tempfile.mkdtemp(prefix="mcp-bench-lists-"))
    bearer = f"Bearer {token('bench-agent', scopes=list_fleet.scopes(), exp=int(time.time()) + 86400)}"
    bodies = {}
    for name in args.payloads:
        body, method, tool, server = payload(name)
        path = logs / f"{name}.json"
        path.write_bytes(body)
        bodies[name] = (f"http://127.0.0.1:{{port}}/{server}/mcp", path, headers(method, tool, bearer))

    results: dict = {
        arm: {p: {"envoy_cpu_us": [], "max_rps": [], "envoy_core_busy": []} for p in args.payloads} for arm in args.arms
    }
    fleet = Fleet(logs)
    try:
        for round_number in range(args.rounds):
            print(f"== round {round_number + 1} of {args.rounds}", flush=True)
            for arm in args.arms:
                bench_arm(arm, fleet, logs, bodies, args, results, bearer)
    finally:
        fleet.stop()

    document = {
        "machine": machine(),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "closed_loop_connections": bench_envoy.CLOSED_LOOP_CONNECTIONS,
            "payload_bytes": {name: len(payload(name)[0]) for name in args.payloads},
            "answer_bytes": {f"list-{n}": len(json.dumps(list_fleet.advertised_tools(n), separators=(",", ":"))) for n in list_fleet.SERVERS.values()},
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1))
    print(tables(document), end="")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
