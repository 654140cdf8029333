"""Envoy CPU per MCP request, side by side in one run (preliminary; see BENCHMARKS.md).

Arms, all from envoy/envoy.yaml with filters removed or swapped:
  bare    - no MCP filter, no ext_authz, no ratelimit
  native  - Envoy's own envoy.filters.http.mcp instead of ours
  filter  - our wasm filter only
  chain   - our filter + ext_authz (authz-service) + ratelimit (memory)

Envoy runs with --concurrency 1 pinned to CPU 0; wrk (8 connections) and the upstream
run on CPU 1. CPU per request = (utime + stime of Envoy, from /proc) / requests served.
Arms are interleaved, several rounds, and medians reported with ratios.

    .venv/bin/python tests/bench/bench_envoy.py [rounds] [seconds]
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Authz, Process, Ratelimit, free_port, python, start_gateway, token  # noqa: E402
from harness.envoy import ENVOY_DIR  # noqa: E402

HERE = Path(__file__).resolve().parent
TOOL_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "get_account_balance",
            "arguments": {"account_id": "acc-001"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
        },
    },
    separators=(",", ":"),
)


def http_filters(config):
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def arm(name: str):
    def mutate(config):
        hcm = http_filters(config)
        filters = hcm["http_filters"]
        keep = {
            "bare": {"envoy.filters.http.router"},
            "native": {"envoy.filters.http.router"},
            "filter": {"mcp", "envoy.filters.http.router"},
            "chain": {f["name"] for f in filters},
        }[name]
        hcm["http_filters"] = [f for f in filters if f["name"] in keep]
        if name == "native":
            hcm["http_filters"].insert(
                0,
                {
                    "name": "envoy.filters.http.mcp",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"},
                },
            )
        if name != "chain":
            for route in hcm["route_config"]["virtual_hosts"][0]["routes"]:
                route.pop("typed_per_filter_config", None)
        if name != "chain":
            hcm.pop("local_reply_config", None)

    return mutate


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port: int, seconds: int, headers: list[tuple[str, str]], lua: Path) -> tuple[int, int]:
    args = ["taskset", "-c", "1", "wrk", "-t1", "-c8", f"-d{seconds}s", "-s", str(lua)]
    for k, v in headers:
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/mcp"], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return requests, int(bad.group(1)) if bad else 0


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    logs = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    lua = logs / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(TOOL_CALL)}\n')
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_account_balance"),
        ("authorization", f"Bearer {token('bench-agent')}"),
    ]
    upstream_port = free_port()
    upstream = Process("upstream", ["taskset", "-c", "1", python(), str(HERE / "fast_upstream.py"), str(upstream_port)], logs)
    authz = Authz(logs)
    ratelimit = Ratelimit(logs)
    results: dict[str, list[float]] = {name: [] for name in ("bare", "native", "filter", "chain")}
    try:
        for _ in range(rounds):
            for name in results:
                envoy, port = start_gateway(
                    logs,
                    {"mcp_server": upstream_port, **authz.upstreams(), **ratelimit.upstreams()},
                    mutate=arm(name),
                )
                try:
                    subprocess.run(["taskset", "-p", "-c", "0", str(envoy.pid)], capture_output=True, check=True)
                    run_wrk(port, 2, headers, lua)  # warm up
                    before = cpu_seconds(envoy.pid)
                    served, bad = run_wrk(port, seconds, headers, lua)
                    used = cpu_seconds(envoy.pid) - before
                    if bad:
                        raise RuntimeError(f"{name}: {bad} non-2xx responses")
                    results[name].append(used * 1e6 / served)
                    print(f"{name:7s} {served / seconds:8.0f} req/s  {used * 1e6 / served:6.1f} Envoy CPU-µs/request", flush=True)
                finally:
                    envoy.stop()
    finally:
        for process in (ratelimit, authz, upstream):
            process.stop()
    bare = statistics.median(results["bare"])
    native = statistics.median(results["native"])
    print("\narm      median CPU-µs/req  [min, max]      vs bare  vs native")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:7s}  {median:8.1f}          [{min(values):.1f}, {max(values):.1f}]   {median / bare:5.2f}x   {median / native:5.2f}x")


if __name__ == "__main__":
    main()
