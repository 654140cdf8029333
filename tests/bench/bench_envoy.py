"""The gateway's cost per MCP request, side by side with bare Envoy and Envoy's own MCP
filter, in one run on one machine (method and results: BENCHMARKS.md).

Arms, all built from the one-server gateway the tests run (tests/harness/single.py: the
rendered envoy/standalone.yaml of one server at /mcp) by removing or swapping filters:
  bare          - router only (no MCP filter, no ext_authz, no rate limit, no audit log)
  native        - Envoy's envoy.filters.http.mcp (body limit and route cache clearing
                  set as ours are), no audit log
  filter        - our wasm filter with its audit access log and metrics
  chain-memory  - our filter + ext_authz (authz-service) + ratelimit (memory store)
  chain-redis   - the same with the rate limiter on Redis

Payloads: a small tools/call, a 16 KiB tools/call, tools/list (a 2.5 KB answer), and a
tools/call answered with an SSE stream (two progress events, then the result).

Per arm and payload: a closed-loop run (16 connections) gives Envoy CPU per request
(utime + stime from /proc over requests answered), the maximum throughput and the
services' CPU per decision; open-loop runs at fixed rates (oha with coordinated-omission
correction) give p50/p99/p99.9 latency. Envoy (--concurrency 1) is pinned to CPU 0,
the load generator and the upstream to CPU 1; the services and Redis float (see
`Services`). Arms are interleaved over rounds, so drift hits them alike; medians and
[min, max] are reported.

    .venv/bin/python tests/bench/bench_envoy.py [--rounds 3] [--seconds 5] \
        [--rates 500,1000,2000] [--out target/bench/envoy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import MCP_CLUSTER, Authz, Process, Ratelimit, RedisServer, connection_manager, envoy_binary, envoy_counter, free_port, python, routes, start_gateway, token  # noqa: E402
from harness.procs import ROOT, wait_for_http  # noqa: E402

HERE = Path(__file__).resolve().parent
ARMS = ("bare", "native", "filter", "chain-memory", "chain-redis")
# Not run by default: where the filter's cost goes (`--arms filter,filter-no-log`), and
# the filter of another build beside this one (`--arms filter,filter-baseline
# --baseline-wasm old.wasm`: before/after of a change on the request path), or another
# Envoy config (`--baseline-config old.yaml`, its MCP cluster named mcp_server or
# single.MCP_CLUSTER: before/after of a change of the rendered config).
EXTRA_ARMS = ("filter-no-log", "filter-baseline")
PAYLOADS = ("call-small", "call-16KiB", "tools-list", "call-sse")
VERSION = "2026-07-28"
ENVOY_CPU, OTHERS_CPU = "0", "1"
CLOSED_LOOP_CONNECTIONS = 16
OPEN_LOOP_CONNECTIONS = 64


def arguments(size: int) -> dict:
    """Tool arguments of about `size` bytes, shaped like real inputs (many small fields)."""
    fields: dict = {"account_id": "acc-001"}
    i = 0
    while len(json.dumps(fields, separators=(",", ":"))) < size:
        fields[f"field_{i:04d}"] = {"note": "quarterly statement line", "amount": i * 7, "ok": i % 2 == 0}
        i += 1
    return fields


def payload(name: str) -> tuple[bytes, str, str | None]:
    """(body, MCP method, tool name) of a benchmark request; every id is 1."""
    meta = {"io.modelcontextprotocol/protocolVersion": VERSION}
    if name == "tools-list":
        method, tool, params = "tools/list", None, {"_meta": meta}
    else:
        tool, args = {
            "call-small": ("get_account_balance", {"account_id": "acc-001"}),
            "call-16KiB": ("query_transactions", arguments(16 * 1024)),
            "call-sse": ("generate_report", {"account_id": "acc-001", "period": "2026-Q3"}),
        }[name]
        method, params = "tools/call", {"name": tool, "arguments": args, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return json.dumps(body, separators=(",", ":")).encode(), method, tool


def arm_config(name: str):
    """The Envoy config mutation that makes `name` out of the one-server gateway."""

    def mutate(config: dict) -> None:
        hcm = connection_manager(config)
        filters = hcm["http_filters"]
        if name.startswith("chain"):
            return
        keep = {"envoy.filters.http.router"} | ({"mcp"} if name.startswith("filter") else set())
        hcm["http_filters"] = [f for f in filters if f["name"] in keep]
        if name == "native":
            hcm["http_filters"].insert(
                0,
                {
                    "name": "envoy.filters.http.mcp",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
                        # As ours: a 1 MiB body limit (its default, 8 KiB, would parse
                        # only half of the 16 KiB call) and a route re-selection.
                        "max_request_body_size": 1048576,
                        "clear_route_cache": True,
                    },
                },
            )
        for route in routes(config):
            route.pop("typed_per_filter_config", None)
            route.get("route", {}).pop("rate_limits", None)
        hcm.pop("local_reply_config", None)
        if name not in ("filter", "filter-baseline"):
            # The audit record is part of what our filter does; the others have none.
            hcm.pop("access_log", None)

    return mutate


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ratelimit_decisions(admin_port: int) -> int:
    """Rate limit decisions Envoy received on the MCP route (its own counters): a CPU
    figure read from /proc at 10 ms resolution cannot show whether a service was asked."""
    return sum(envoy_counter(admin_port, f"cluster.{MCP_CLUSTER}.ratelimit.{outcome}") for outcome in ("ok", "over_limit"))


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def pin(pid: int, cpu: str) -> None:
    """All threads of `pid` (and the ones they start) onto `cpu`."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], capture_output=True, check=True)


def oha_binary() -> str:
    found = shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha")
    if not Path(found).exists():
        raise FileNotFoundError("oha is not installed: run scripts/bench.sh (cargo install oha)")
    return found


def run_oha(url: str, body_file: Path, headers: list[tuple[str, str]], seconds: float, rate: int | None) -> dict:
    """One oha run; returns its JSON summary. With `rate`, open loop: requests are
    scheduled at that rate and latency counts from the scheduled time."""
    args = ["taskset", "-c", OTHERS_CPU, oha_binary(), "--no-tui", "--output-format", "json", "-z", f"{seconds}s"]
    args += ["-m", "POST", "-D", str(body_file)]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    if rate:
        args += ["-c", str(OPEN_LOOP_CONNECTIONS), "-q", str(rate), "--latency-correction"]
    else:
        args += ["-c", str(CLOSED_LOOP_CONNECTIONS)]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def answered(report: dict) -> int:
    """Requests that got a 200; anything else (or a transport error) fails the run."""
    codes = {int(code): count for code, count in report.get("statusCodeDistribution", {}).items()}
    errors = report.get("errorDistribution", {})
    # oha ends a timed run by cutting the requests in flight: those are not failures.
    errors = {k: v for k, v in errors.items() if "aborted due to deadline" not in k}
    if set(codes) - {200} or errors:
        raise RuntimeError(f"not every request was answered 200: {codes} {errors}")
    return codes.get(200, 0)


class Services:
    """Upstream (pinned with the load generator to the CPU Envoy does not use),
    authz-service, two ratelimit-services (memory, Redis) and Redis (not pinned).

    The services float: pinned to the load generator's CPU, their threads queue behind
    it and the upstream, and every side call of the chain waits for that queue (p99 of
    several tens of ms at 1,000 requests/s on 2 cores), which measures the bench, not
    the gateway. Envoy's CPU per request is its own process time either way."""

    def __init__(self, logs: Path):
        self.started: list[Process] = []
        try:
            self.upstream_port = free_port()
            upstream = self._add(Process("upstream", [python(), str(HERE / "fast_upstream.py"), str(self.upstream_port)], logs))
            pin(upstream.pid, OTHERS_CPU)
            wait_for_http(self.upstream_port, "/", process=upstream)
            self.authz = self._add(Authz(logs))
            self.ratelimit_memory = self._add(Ratelimit(logs))
            self.redis = self._add(RedisServer(logs))
            self.ratelimit_redis = self._add(Ratelimit(logs, redis_url=f"redis://127.0.0.1:{self.redis.port}/"))
        except BaseException:
            self.stop()
            raise

    def _add(self, process):
        self.started.append(process)
        return process

    def upstreams(self, arm: str) -> dict[str, int]:
        ratelimit = self.ratelimit_redis if arm == "chain-redis" else self.ratelimit_memory
        # mcp_server: the MCP cluster of a --baseline-config from before the registry.
        return {MCP_CLUSTER: self.upstream_port, "mcp_server": self.upstream_port, **self.authz.upstreams(), **ratelimit.upstreams()}

    def measured(self, arm: str) -> dict[str, Process]:
        """The service processes whose CPU counts per decision in this arm."""
        if arm == "chain-memory":
            return {"authz": self.authz, "ratelimit": self.ratelimit_memory}
        if arm == "chain-redis":
            return {"authz": self.authz, "ratelimit": self.ratelimit_redis, "redis": self.redis}
        return {}

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()


def bench_arm(arm: str, services: Services, logs: Path, bodies: dict, args, results: dict) -> None:
    source = None
    if arm == "filter-baseline":
        # The harness loads the .wasm named by MCP_FILTER_WASM (tests/harness/envoy.py).
        os.environ["MCP_FILTER_WASM"] = str(args.baseline_wasm)
        source = args.baseline_config
    try:
        envoy, port = start_gateway(logs, services.upstreams(arm), source=source, mutate=arm_config(arm))
    finally:
        os.environ.pop("MCP_FILTER_WASM", None)
    try:
        pin(envoy.pid, ENVOY_CPU)
        url = f"http://127.0.0.1:{port}/mcp"
        for name in args.payloads:
            body_file, headers = bodies[name]
            figures = results[arm][name]
            run_oha(url, body_file, headers, 1, None)  # warm up (JIT, connections, caches)
            measured = services.measured(arm)
            before = {key: cpu_seconds(p.pid) for key, p in measured.items()}
            decisions_before = ratelimit_decisions(envoy.admin_port)
            envoy_before, start = cpu_seconds(envoy.pid), time.monotonic()
            report = run_oha(url, body_file, headers, args.seconds, None)
            envoy_used, elapsed = cpu_seconds(envoy.pid) - envoy_before, time.monotonic() - start
            count = answered(report)
            figures["envoy_cpu_us"].append(envoy_used * 1e6 / count)
            figures["max_rps"].append(count / args.seconds)
            figures["envoy_core_busy"].append(envoy_used / elapsed)
            for key, process in measured.items():
                figures.setdefault(f"{key}_cpu_us", []).append((cpu_seconds(process.pid) - before[key]) * 1e6 / count)
            if arm.startswith("chain"):
                decided = ratelimit_decisions(envoy.admin_port) - decisions_before
                figures.setdefault("ratelimit_decisions_per_request", []).append(decided / count)
            for rate in args.rates:
                report = run_oha(url, body_file, headers, args.seconds, rate)
                answered(report)
                percentiles = report["latencyPercentiles"]
                for label, key in (("p50", "p50"), ("p99", "p99"), ("p99.9", "p99.9")):
                    figures["latency_ms"].setdefault(f"{rate}", {}).setdefault(label, []).append(percentiles[key] * 1000)
            line = f"{arm:13s} {name:11s} {figures['envoy_cpu_us'][-1]:7.1f} Envoy CPU-µs/req  {figures['max_rps'][-1]:7.0f} req/s max"
            line += "".join(f"  {r}/s p99 {figures['latency_ms'][str(r)]['p99'][-1]:.2f} ms" for r in args.rates)
            print(line, flush=True)
        rss, peak = memory_mib(envoy.pid)
        results[arm]["envoy_rss_mib"].append(rss)
        results[arm]["envoy_peak_rss_mib"].append(peak)
    finally:
        envoy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rates", default="500,1000,2000", help="open-loop rates, requests per second")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--payloads", default=",".join(PAYLOADS))
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench" / "envoy.json")
    parser.add_argument("--baseline-wasm", type=Path, help="the .wasm of the filter-baseline arm")
    parser.add_argument("--baseline-config", type=Path, help="the Envoy config of the filter-baseline arm (default: the one-server gateway)")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",") if r]
    args.arms = [a for a in args.arms.split(",") if a]
    args.payloads = [p for p in args.payloads.split(",") if p]
    for value, known in ((args.arms, ARMS + EXTRA_ARMS), (args.payloads, PAYLOADS)):
        unknown = set(value) - set(known)
        if unknown:
            parser.error(f"unknown {sorted(unknown)}; known: {', '.join(known)}")
    if "filter-baseline" in args.arms and not (args.baseline_wasm and args.baseline_wasm.exists()):
        parser.error("the filter-baseline arm needs --baseline-wasm pointing at a built .wasm")

    logs = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    # A token that outlives the run (the harness default lasts 10 minutes).
    bearer = f"Bearer {token('bench-agent', exp=int(time.time()) + 86400)}"
    bodies = {}
    for name in args.payloads:
        body, method, tool = payload(name)
        path = logs / f"{name}.json"
        path.write_bytes(body)
        headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", VERSION),
            ("mcp-method", method),
            ("authorization", bearer),
        ] + ([("mcp-name", tool)] if tool else [])
        bodies[name] = (path, headers)

    results: dict = {
        arm: {
            "envoy_rss_mib": [],
            "envoy_peak_rss_mib": [],
            **{p: {"envoy_cpu_us": [], "max_rps": [], "envoy_core_busy": [], "latency_ms": {}} for p in args.payloads},
        }
        for arm in args.arms
    }
    services = Services(logs)
    try:
        for round_number in range(args.rounds):
            print(f"== round {round_number + 1} of {args.rounds}", flush=True)
            for arm in args.arms:
                bench_arm(arm, services, logs, bodies, args, results)
    finally:
        services.stop()

    document = {
        "machine": machine(),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "rates": args.rates,
            "closed_loop_connections": CLOSED_LOOP_CONNECTIONS,
            "open_loop_connections": OPEN_LOOP_CONNECTIONS,
            "payload_bytes": {name: len(payload(name)[0]) for name in args.payloads},
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1))
    print(f"results: {args.out}")


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    envoy = subprocess.run([str(envoy_binary()), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "kernel": os.uname().release,
        "envoy": envoy.split("version:")[-1].strip(),
        "oha": subprocess.run([oha_binary(), "--version"], capture_output=True, text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


if __name__ == "__main__":
    main()
