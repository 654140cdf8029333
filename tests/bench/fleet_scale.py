"""Fleet scale (issue 15): what 1,000 and 10,000 registered MCP servers (20 tools each)
cost the gateway, beside a fleet of one. Method and results: BENCHMARKS.md, "Fleet
scale". A benchmark, not a test: nothing here asserts a time.

Phases (all by default; `--phases` picks some):
  render   `mcp-registry render` of each fleet into a fresh directory: wall time, CPU
           time and peak RSS of the process (wait4 rusage), the size of every output
           file, and the Kubernetes/Istio objects past the API server's size limits.
  load     Envoy on each fleet's rendered bootstrap with the full chain (filter,
           ext_authz on the authz-service, ratelimit on the ratelimit-service, each on
           that fleet's policy and limits): time from start to /ready LIVE (and Envoy's
           CPU time by then), RSS and the admin /memory figures once up, the services'
           start time and RSS; then a live change: one server's manifest added and
           `render` run into the directory the three processes watch, timed until a
           tools/call to the new server is answered 200 (render's own time and the time
           after render wrote its files, when Envoy, the policy and the limits reload).
  startup  Envoy alone on each fleet, its routes and clusters files as rendered (YAML),
           the same resources as JSON, and as rendered without the servers' per-cluster
           stats: time to LIVE, memory, and the size and time of a /stats/prometheus
           scrape (every cluster has its own stats).
  cpu      Envoy CPU per request (utime+stime from /proc over 200s answered, closed
           loop, as bench_envoy.py) for the same tools/call to the first and the last
           server route of each fleet, the filter alone and the full chain, Envoy
           (--concurrency 1) pinned to CPU 0, load generator and upstream on CPU 1,
           arms interleaved over rounds; ratios against the one-server fleet. With
           `--tables linear,matcher` also on a variant of the routes whose virtual host
           picks the route from a hash map on the path (see `matcher_variant`).
  services the criterion benches `authz-service/benches/fleet.rs` and
           `ratelimit-service/benches/fleet.rs` on the rendered fleets (per-check and
           per-decision cost, policy and limits load time, the RFC 9728 document).

Each phase's rounds interleave the fleet sizes, so drift hits them alike; figures are
medians with [min, max].

    .venv/bin/python tests/bench/fleet_scale.py [--sizes 1,1000,10000] \
        [--cpu-sizes 1,1000,10000] [--rounds 3] [--cpu-rounds 5] [--seconds 5] \
        [--phases render,load,startup,cpu,services] [--tables linear,matcher] \
        [--out target/bench/fleet.json]
    .venv/bin/python tests/bench/fleet_scale.py --report target/bench/fleet.json
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_envoy import VERSION, answered, cpu_seconds, machine, memory_mib, pin, run_oha  # noqa: E402
from fleet_manifests import CALLED_TOOL, generate, server_id, write_server  # noqa: E402
from harness import Authz, Process, Ratelimit, connection_manager, envoy_binary, free_port, python, render_config, token, wasm_path  # noqa: E402
from harness.registry import REGISTRY  # noqa: E402
from harness.procs import ROOT, wait_for_http  # noqa: E402

HERE = Path(__file__).resolve().parent
PHASES = ("render", "load", "startup", "cpu", "services")
MODES = ("filter", "chain")
TABLES = ("linear", "matcher")
FORMS = ("yaml", "json", "lean-stats")
ENVOY_CPU, OTHERS_CPU = "0", "1"
# Kubernetes refuses a ConfigMap whose data passes 1 MiB, and etcd any object past
# about 1.5 MiB (its default request limit): an object bigger than that cannot be
# applied as rendered.
CONFIGMAP_LIMIT = 1 << 20
ETCD_LIMIT = 1_572_864


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_timed(argv: list[str]) -> dict:
    """Runs a command; its wall time, user+system CPU time and peak RSS (wait4)."""
    start = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    stderr = child.stderr.read().decode("utf-8", "replace")
    child.stderr.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({child.returncode}):\n{stderr[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def render(manifests: Path, out: Path) -> dict:
    return run_timed([str(REGISTRY), "render", str(manifests), "--out", str(out), "--allow-loopback-endpoints"])


def output_sizes(out: Path) -> dict:
    """Bytes of every rendered file, and the size of each Kubernetes/Istio object (the
    YAML documents of kubernetes/ and istio/, as `kubectl apply` would send them)."""
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    objects = {}
    for folder in ("kubernetes", "istio"):
        for path in sorted((out / folder).glob("*.yaml")):
            for document in re.split(r"^---\s*$", path.read_text(), flags=re.M):
                kind = re.search(r"^kind: *(\S+)", document, flags=re.M)
                name = re.search(r"^  name: *(\S+)", document, flags=re.M)
                if kind and name:
                    objects[f"{folder}/{kind.group(1)}/{name.group(1)}"] = len(document.encode())
    return {"files": files, "objects": objects}


# ---- the fleets ---------------------------------------------------------------------


class Fleets:
    """The synthetic fleets' manifests (endpoints on the fast upstream's port) and their
    rendered outputs, in `work`."""

    def __init__(self, work: Path, sizes: list[int], port: int):
        self.work, self.sizes, self.port = work, sizes, port
        for size in sizes:
            manifests = self.manifests(size)
            if manifests.exists():
                shutil.rmtree(manifests)
            generate(manifests, size, port)

    def manifests(self, size: int) -> Path:
        return self.work / "manifests" / str(size)

    def rendered(self, size: int) -> Path:
        """What the services benches read (FLEET_BENCH_DIR/<n>)."""
        return self.work / "rendered" / str(size)

    def ensure_rendered(self, size: int) -> Path:
        """The fleet rendered, reusing an earlier run's rendering if it has the same
        endpoint port (rendering 10,000 servers takes about a minute)."""
        out = self.rendered(size)
        clusters = out / "envoy" / "clusters.yaml"
        if not (clusters.exists() and f"port_value: {self.port}" in clusters.read_text()):
            if out.exists():
                shutil.rmtree(out)
            render(self.manifests(size), out)
        return out


def upstream_port(work: Path) -> int:
    """The previous run's upstream port when it is free (so its renderings stay valid)."""
    saved = work / "upstream-port"
    if saved.exists():
        port = int(saved.read_text())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    port = free_port()
    saved.write_text(f"{port}\n")
    return port


def phase_render(fleets: Fleets, args, results: dict) -> None:
    for round_number in range(args.rounds):
        for size in rotated(fleets.sizes, round_number):
            # Into a fresh directory each time (render leaves unchanged files alone);
            # the last one is what the other phases use (the bootstrap names its own
            # directory, so a rendering cannot be moved).
            out = fleets.rendered(size)
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            figures = render(fleets.manifests(size), out)
            entry = results.setdefault(str(size), {"runs": []})
            entry["runs"].append(figures)
            entry["output"] = output_sizes(out)
            print(f"render {size:6d} servers: {figures['wall_s']:6.2f} s wall {figures['cpu_s']:6.2f} s CPU {figures['peak_rss_mib']:7.1f} MiB peak", flush=True)


def rotated(items: list, by: int) -> list:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


# ---- Envoy and the services on a rendered fleet ------------------------------------


class TimedEnvoy(Process):
    """Envoy (one worker) on a rendered config; `ready_s` from spawn to /ready LIVE."""

    def __init__(self, config_path: Path, admin_port: int, log_dir: Path, timeout: float = 300):
        start = time.monotonic()
        super().__init__(
            f"envoy-{admin_port}",
            [
                envoy_binary(), "-c", str(config_path), "--concurrency", "1", "--log-level", "warn",
                "--disable-hot-restart", "--file-flush-interval-msec", "1000",
            ],
            log_dir,
        )
        self.admin_port = admin_port
        deadline = start + timeout
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2) as response:
                    if b"LIVE" in response.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Envoy not LIVE after {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.01)
        self.ready_s = time.monotonic() - start
        self.ready_cpu_s = cpu_seconds(self.pid)

    def memory(self) -> dict:
        """RSS from /proc and the allocator's figures from admin /memory, in MiB."""
        rss, peak = memory_mib(self.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/memory", timeout=10) as response:
            allocator = json.loads(response.read())
        return {
            "rss_mib": rss,
            "peak_rss_mib": peak,
            "allocated_mib": int(allocator["allocated"]) / 2**20,
            "heap_size_mib": int(allocator["heap_size"]) / 2**20,
        }


def filter_only(config: dict) -> None:
    """The rendered bootstrap with the MCP filter alone (no ext_authz, no ratelimit)."""
    hcm = connection_manager(config)
    dropped = ("envoy.filters.http.ext_authz", "envoy.filters.http.ratelimit")
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] not in dropped]


def matcher_variant(out: Path, dest: Path) -> Path:
    """A copy of a rendered fleet's Envoy files (in `dest`) whose virtual host picks the
    route with a matcher tree, a hash map from `:path` to the server's route, instead of
    Envoy's in-order search of the route list. `:path` holds the query string, so the
    map's miss (`on_no_match`) is the rendered route list as it is: a path with a query,
    the metadata route and unregistered paths are routed as before, only slower. Not
    what render writes: the benchmark's evidence for what it could write."""
    envoy_dir = dest / "envoy"
    if dest.exists():
        shutil.rmtree(dest)
    envoy_dir.mkdir(parents=True)
    shutil.copy(out / "envoy" / "clusters.yaml", envoy_dir / "clusters.yaml")
    document = yaml.load((out / "envoy" / "routes.yaml").read_text(), Loader=yaml.CSafeLoader)
    host = document["resources"][0]["virtual_hosts"][0]
    routes = host.pop("routes")
    exact = {route["match"]["path"]: route for route in routes if "path" in route["match"]}
    host["matcher"] = {
        "matcher_tree": {
            "input": {
                "name": "path",
                "typed_config": {"@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": ":path"},
            },
            "exact_match_map": {
                "map": {
                    path: {"action": {"name": route["name"], "typed_config": {"@type": "type.googleapis.com/envoy.config.route.v3.Route", **route}}}
                    for path, route in exact.items()
                }
            },
        },
        "on_no_match": {
            "action": {"name": "route-list", "typed_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteList", "routes": routes}}
        },
    }
    # JSON is YAML: Envoy reads it as the .yaml it watches.
    (envoy_dir / "routes.yaml").write_text(json.dumps(document))
    bootstrap = (out / "envoy" / "bootstrap.yaml").read_text().replace(str(out / "envoy"), str(envoy_dir))
    (envoy_dir / "bootstrap.yaml").write_text(bootstrap)
    return dest


def json_variant(out: Path, dest: Path) -> Path:
    """A copy of a rendered fleet's Envoy files with the routes and clusters as JSON
    files (the same resources): Envoy parses a watched file by its extension, and YAML
    goes through a YAML parser first."""
    envoy_dir = dest / "envoy"
    if dest.exists():
        shutil.rmtree(dest)
    envoy_dir.mkdir(parents=True)
    bootstrap = (out / "envoy" / "bootstrap.yaml").read_text()
    for name in ("clusters", "routes"):
        document = yaml.load((out / "envoy" / f"{name}.yaml").read_text(), Loader=yaml.CSafeLoader)
        (envoy_dir / f"{name}.json").write_text(json.dumps(document))
        bootstrap = bootstrap.replace(str(out / "envoy" / f"{name}.yaml"), str(envoy_dir / f"{name}.json"))
    (envoy_dir / "bootstrap.yaml").write_text(bootstrap.replace(str(out / "envoy"), str(envoy_dir)))
    return dest


def lean_stats(config: dict) -> None:
    """No per-cluster stats for the servers' clusters (Envoy keeps about 170 per
    cluster; the filter's own metrics carry the server as a label)."""
    config.setdefault("stats_config", {})["stats_matcher"] = {"exclusion_list": {"patterns": [{"prefix": "cluster.mcp-server/"}]}}


def start_envoy(out: Path, logs: Path, services: dict[str, int], mode: str, extra=None) -> tuple[TimedEnvoy, int]:
    listener, admin = free_port(), free_port()

    def mutate(config: dict) -> None:
        if mode == "filter":
            filter_only(config)
        if extra:
            extra(config)

    config = render_config(out / "envoy" / "bootstrap.yaml", logs, listener, admin, services, mutate=mutate)
    return TimedEnvoy(config, admin, logs), listener


class Services:
    """authz-service and ratelimit-service on one rendered fleet (they watch its files)."""

    def __init__(self, out: Path, logs: Path):
        self.authz = self.ratelimit = None
        start = time.monotonic()
        self.authz = Authz(logs, policy=out / "policy.yaml", in_place=True)
        self.authz_ready_s = time.monotonic() - start
        try:
            start = time.monotonic()
            self.ratelimit = Ratelimit(logs, config_dir=out / "limits")
            self.ratelimit_ready_s = time.monotonic() - start
        except BaseException:
            self.authz.stop()
            raise

    def upstreams(self) -> dict[str, int]:
        return {**self.authz.upstreams(), **self.ratelimit.upstreams()}

    def stop(self) -> None:
        for process in (self.ratelimit, self.authz):
            if process is not None:
                process.stop()


def call_body() -> bytes:
    """The benchmark's tools/call (about 190 bytes, as bench_envoy's small call)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": CALLED_TOOL,
            "arguments": {"customer_id": "cus_0123456789ab"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": VERSION},
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def call_headers(bearer: str) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", VERSION),
        ("mcp-method", "tools/call"),
        ("mcp-name", CALLED_TOOL),
        ("authorization", bearer),
    ]


def post_status(port: int, path: str, body: bytes, headers: list[tuple[str, str]]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def phase_load(fleets: Fleets, logs: Path, bearer: str, args, results: dict) -> None:
    body, headers = call_body(), call_headers(bearer)
    for round_number in range(args.rounds):
        for size in rotated(fleets.sizes, round_number):
            out = fleets.ensure_rendered(size)
            entry = results.setdefault(str(size), {})
            pristine = fleets.work / "pristine"
            if pristine.exists():
                shutil.rmtree(pristine)
            shutil.copytree(out, pristine)
            services = Services(out, logs)
            envoy = None
            new_manifest = None
            try:
                envoy, port = start_envoy(out, logs, services.upstreams(), "chain")
                status = post_status(port, f"/{server_id(0)}/mcp", body, headers)
                if status != 200:
                    raise RuntimeError(f"fleet of {size}: a call to {server_id(0)} got {status}:\n{envoy.log()[-3000:]}")
                time.sleep(2)
                memory = envoy.memory()
                figures = {
                    "envoy_ready_s": envoy.ready_s,
                    "envoy_ready_cpu_s": envoy.ready_cpu_s,
                    **{f"envoy_{k}": v for k, v in memory.items()},
                    "authz_ready_s": services.authz_ready_s,
                    "ratelimit_ready_s": services.ratelimit_ready_s,
                    "authz_rss_mib": memory_mib(services.authz.pid)[0],
                    "ratelimit_rss_mib": memory_mib(services.ratelimit.pid)[0],
                }
                # The live change: one more server, rendered into the watched directory.
                new = server_id(size + round_number)
                path = f"/{new}/mcp"
                status = post_status(port, path, body, headers)
                if status != 404:
                    raise RuntimeError(f"{new} answered {status} before it was registered")
                new_manifest = write_server(fleets.manifests(size), size + round_number, fleets.port)
                cpu_before = {name: cpu_seconds(p.pid) for name, p in (("envoy", envoy), ("authz", services.authz), ("ratelimit", services.ratelimit))}
                rendered = render(fleets.manifests(size), out)
                written = time.monotonic()
                polls = 0
                while True:
                    polls += 1
                    status = post_status(port, path, body, headers)
                    if status == 200:
                        break
                    if time.monotonic() - written > 120:
                        raise RuntimeError(f"{new} not served 120 s after render (last status {status})")
                    time.sleep(0.01)
                served = time.monotonic() - written
                # Let every watcher finish (a later reload would count in the next CPU reading).
                time.sleep(1)
                figures.update(
                    add_render_wall_s=rendered["wall_s"],
                    add_render_cpu_s=rendered["cpu_s"],
                    add_served_after_render_s=served,
                    add_total_s=rendered["wall_s"] + served,
                    add_polls=polls,
                    **{f"add_{name}_cpu_s": cpu_seconds(p.pid) - cpu_before[name] for name, p in (("envoy", envoy), ("authz", services.authz), ("ratelimit", services.ratelimit))},
                    envoy_rss_after_add_mib=memory_mib(envoy.pid)[0],
                )
                for key, value in figures.items():
                    entry.setdefault(key, []).append(value)
                print(
                    f"load {size:6d} servers: LIVE after {envoy.ready_s:6.2f} s, RSS {memory['rss_mib']:7.1f} MiB, "
                    f"allocated {memory['allocated_mib']:7.1f} MiB; add one: render {rendered['wall_s']:6.2f} s, "
                    f"then served after {served:5.2f} s",
                    flush=True,
                )
            finally:
                if envoy is not None:
                    envoy.stop()
                services.stop()
                # Back to the fleet as rendered (as render would write it without the
                # new manifest, without paying for another render).
                if new_manifest is not None:
                    new_manifest.unlink()
                    (new_manifest.parent / "credentials" / new_manifest.stem).unlink()
                shutil.rmtree(out)
                pristine.rename(out)


def phase_startup(fleets: Fleets, logs: Path, args, results: dict) -> None:
    """Envoy alone (the filter, no services) on each fleet, its xDS files as rendered
    (YAML) and as JSON: time to LIVE, and what a Prometheus scrape of it costs (every
    cluster has its own stats)."""
    outputs = {}
    for size in fleets.sizes:
        for form in args.startup_forms:
            rendered = fleets.ensure_rendered(size)
            outputs[size, form] = json_variant(rendered, fleets.work / "json" / str(size)) if form == "json" else rendered
    arms = sorted(outputs)
    for round_number in range(args.startup_rounds):
        for size, form in rotated(arms, round_number):
            envoy, _ = start_envoy(outputs[size, form], logs, {}, "filter", lean_stats if form == "lean-stats" else None)
            try:
                memory = envoy.memory()
                start = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus", timeout=120) as response:
                    text = response.read()
                scrape = time.monotonic() - start
                figures = results.setdefault(f"{size}-{form}", {})
                for key, value in (
                    ("ready_s", envoy.ready_s),
                    ("ready_cpu_s", envoy.ready_cpu_s),
                    ("prometheus_scrape_s", scrape),
                    ("prometheus_mib", len(text) / 2**20),
                    ("prometheus_samples", sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))),
                    ("rss_mib", memory["rss_mib"]),
                    ("allocated_mib", memory["allocated_mib"]),
                ):
                    figures.setdefault(key, []).append(value)
                print(f"startup {size:6d} servers, {form}: LIVE after {envoy.ready_s:6.2f} s; /stats/prometheus {len(text) / 2**20:6.1f} MiB in {scrape:5.2f} s", flush=True)
            finally:
                envoy.stop()


# ---- Envoy CPU per request ----------------------------------------------------------


def targets(size: int) -> dict[str, str]:
    """The first and the last server route of a fleet (render orders routes by id)."""
    first, last = server_id(0), server_id(size - 1)
    return {"first": first} if size == 1 else {"first": first, "last": last}


def phase_cpu(fleets: Fleets, logs: Path, bearer: str, args, results: dict) -> None:
    body_file = logs / "call.json"
    body_file.write_bytes(call_body())
    headers = call_headers(bearer)
    services = {size: Services(fleets.ensure_rendered(size), logs) for size in args.cpu_sizes}
    outputs = {(size, "linear"): fleets.rendered(size) for size in args.cpu_sizes}
    if "matcher" in args.tables:
        for size in args.cpu_sizes:
            if size > 1:
                outputs[size, "matcher"] = matcher_variant(fleets.rendered(size), fleets.work / "matcher" / str(size))
    try:
        arms = [(size, mode, table) for table in args.tables for mode in args.modes for size in args.cpu_sizes if (size, table) in outputs]
        for round_number in range(args.cpu_rounds):
            print(f"== cpu round {round_number + 1} of {args.cpu_rounds}", flush=True)
            for size, mode, table in rotated(arms, round_number):
                envoy, port = start_envoy(outputs[size, table], logs, services[size].upstreams(), mode)
                arm = mode if table == "linear" else f"{mode}-{table}"
                try:
                    pin(envoy.pid, ENVOY_CPU)
                    for target, sid in targets(size).items():
                        url = f"http://127.0.0.1:{port}/{sid}/mcp"
                        run_oha(url, body_file, headers, 1, None)  # warm up
                        before, start = cpu_seconds(envoy.pid), time.monotonic()
                        report = run_oha(url, body_file, headers, args.seconds, None)
                        used, elapsed = cpu_seconds(envoy.pid) - before, time.monotonic() - start
                        count = answered(report)
                        figures = results.setdefault(arm, {}).setdefault(f"{size}-{target}", {"envoy_cpu_us": [], "rps": [], "busy": [], "round": []})
                        figures["envoy_cpu_us"].append(used * 1e6 / count)
                        figures["rps"].append(count / args.seconds)
                        figures["busy"].append(used / elapsed)
                        figures["round"].append(round_number)
                        print(f"{arm:14s} {size:6d} servers, {target:5s} route: {used * 1e6 / count:7.1f} Envoy CPU-µs/req {count / args.seconds:7.0f} req/s", flush=True)
                finally:
                    envoy.stop()
    finally:
        for service in services.values():
            service.stop()


def cpu_ratios(results: dict, sizes: list[int]) -> dict:
    """Per arm: the median of the per-round ratios to the one-server fleet with the
    same filters (each ratio from one round, so both sides saw the same drift), their
    range, and the ratio of the medians."""
    ratios: dict = {}
    if 1 not in sizes:
        return ratios
    for arm, figures_by_target in results.items():
        baseline = results.get(arm.split("-")[0], {}).get("1-first")
        if baseline is None:
            continue
        base = dict(zip(baseline["round"], baseline["envoy_cpu_us"]))
        for target, figures in figures_by_target.items():
            if figures is baseline:
                continue
            paired = [value / base[r] for r, value in zip(figures["round"], figures["envoy_cpu_us"]) if r in base]
            if not paired:
                continue
            ratios.setdefault(arm, {})[target] = {
                "median": median(paired),
                "min": min(paired),
                "max": max(paired),
                "ratio_of_medians": median(figures["envoy_cpu_us"]) / median(baseline["envoy_cpu_us"]),
            }
    return ratios


# ---- the services' criterion benches ------------------------------------------------


def phase_services(fleets: Fleets, args, results: dict) -> None:
    for size in fleets.sizes:
        fleets.ensure_rendered(size)
    env = {**os.environ, "FLEET_BENCH_DIR": str(fleets.work / "rendered"), "FLEET_BENCH_SIZES": ",".join(map(str, fleets.sizes))}
    criterion = ROOT / "target" / "criterion"
    for round_number in range(args.service_rounds):
        for crate in ("mcp-authz-service", "mcp-ratelimit-service"):
            done = subprocess.run(
                ["cargo", "bench", "-p", crate, "--bench", "fleet", "--", "--warm-up-time", "1", "--measurement-time", "3"],
                cwd=ROOT, env=env, capture_output=True, text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"cargo bench -p {crate} --bench fleet failed:\n{done.stderr[-3000:]}")
            for line in done.stderr.splitlines():
                if "resource metadata document" in line:
                    size, size_bytes = re.search(r"for (\d+) servers: (\d+) bytes", line).groups()
                    results.setdefault("resource_metadata_bytes", {})[size] = int(size_bytes)
        for group in sorted(p.name for p in criterion.glob("fleet_*")):
            for size in fleets.sizes:
                estimates = criterion / group / str(size) / "new" / "estimates.json"
                if estimates.exists():
                    value = json.loads(estimates.read_text())["median"]["point_estimate"]
                    results.setdefault(group, {}).setdefault(str(size), []).append(value)
                    print(f"{group:28s} {size:6d}: {format_ns(value)}", flush=True)


def deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + value
        else:
            into[key] = value


def format_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


# ---- report ---------------------------------------------------------------------------


def spread(values: list[float], digits: int = 1) -> str:
    """median [min, max]"""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.{digits}f}"
    return f"{median(values):,.{digits}f} [{min(values):,.{digits}f}, {max(values):,.{digits}f}]"


def report(document: dict) -> str:
    """The figures of a run as the Markdown tables of BENCHMARKS.md, "Fleet scale"."""
    results, lines = document["results"], []
    out = lines.append
    if "render" in results:
        render_results = results["render"]
        sizes = sorted(render_results, key=int)
        out("#### Render (`mcp-registry render`, fresh output directory)\n")
        out("| servers x 20 tools | wall (s) | CPU (s) | peak RSS (MiB) |")
        out("|---|---|---|---|")
        for size in sizes:
            runs = render_results[size]["runs"]
            out(f"| {int(size):,} | {spread([r['wall_s'] for r in runs], 2)} | {spread([r['cpu_s'] for r in runs], 2)} | {spread([r['peak_rss_mib'] for r in runs], 0)} |")
        out("\n#### Rendered sizes (MiB)\n")
        files = sorted({f for size in sizes for f in render_results[size]["output"]["files"]})
        out("| file | " + " | ".join(f"{int(s):,}" for s in sizes) + " |")
        out("|---|" + "---|" * len(sizes))
        for name in files:
            out(f"| `{name}` | " + " | ".join(f"{render_results[s]['output']['files'].get(name, 0) / 2**20:.2f}" for s in sizes) + " |")
        out("\n#### Kubernetes and Istio objects as rendered (MiB; a ConfigMap holds at most 1 MiB, etcd takes at most 1.5 MiB per object)\n")
        objects = sorted({o for size in sizes for o in render_results[size]["output"]["objects"]})
        out("| object | " + " | ".join(f"{int(s):,}" for s in sizes) + " |")
        out("|---|" + "---|" * len(sizes))
        for name in objects:
            cells = []
            for size in sizes:
                value = render_results[size]["output"]["objects"].get(name, 0)
                mark = " **(over)**" if (value > CONFIGMAP_LIMIT and "ConfigMap" in name) or value > ETCD_LIMIT else ""
                cells.append(f"{value / 2**20:.2f}{mark}")
            out(f"| {name} | " + " | ".join(cells) + " |")
    if "load" in results:
        load = results["load"]
        sizes = sorted(load, key=int)
        out("\n#### Envoy on the rendered fleet (full chain), and one server added live\n")
        rows = [
            ("Envoy start to /ready LIVE (s)", "envoy_ready_s", 2),
            ("Envoy CPU by then (s)", "envoy_ready_cpu_s", 2),
            ("Envoy RSS once up (MiB)", "envoy_rss_mib", 0),
            ("Envoy admin /memory allocated (MiB)", "envoy_allocated_mib", 0),
            ("Envoy admin /memory heap size (MiB)", "envoy_heap_size_mib", 0),
            ("authz-service start to ready (s)", "authz_ready_s", 2),
            ("authz-service RSS (MiB)", "authz_rss_mib", 0),
            ("ratelimit-service start to ready (s)", "ratelimit_ready_s", 2),
            ("ratelimit-service RSS (MiB)", "ratelimit_rss_mib", 0),
            ("add one server: render wall (s)", "add_render_wall_s", 2),
            ("add one server: served this long after render wrote (s)", "add_served_after_render_s", 2),
            ("add one server: total, render start to first 200 (s)", "add_total_s", 2),
            ("add one server: Envoy CPU for the reload (s)", "add_envoy_cpu_s", 2),
            ("add one server: authz-service CPU for the reload (s)", "add_authz_cpu_s", 2),
            ("add one server: ratelimit-service CPU for the reload (s)", "add_ratelimit_cpu_s", 2),
            ("Envoy RSS after the reload (MiB)", "envoy_rss_after_add_mib", 0),
        ]
        out("| | " + " | ".join(f"{int(s):,} servers" for s in sizes) + " |")
        out("|---|" + "---|" * len(sizes))
        for label, key, digits in rows:
            out(f"| {label} | " + " | ".join(spread(load[s].get(key, []), digits) for s in sizes) + " |")
    if "startup" in results:
        startup = results["startup"]
        out("\n#### Envoy alone: start to LIVE by xDS file format, and a Prometheus scrape\n")
        out("| fleet, files | start to LIVE (s) | Envoy CPU by then (s) | RSS (MiB) | /memory allocated (MiB) | /stats/prometheus (MiB) | samples | scrape time (s) |")
        out("|---|---|---|---|---|---|---|---|")
        for arm in sorted(startup, key=lambda a: (int(a.split("-")[0]), a)):
            size, form = arm.split("-", 1)
            f = startup[arm]
            out(
                f"| {int(size):,}, {form} | {spread(f['ready_s'], 2)} | {spread(f['ready_cpu_s'], 2)} | {spread(f.get('rss_mib', []), 0)} | "
                f"{spread(f.get('allocated_mib', []), 0)} | {spread(f['prometheus_mib'], 1)} | {spread(f['prometheus_samples'], 0)} | {spread(f['prometheus_scrape_s'], 2)} |"
            )
    if "cpu" in results:
        cpu, ratios = results["cpu"], results.get("cpu_ratios", {})
        out("\n#### Envoy CPU per request (µs; closed loop, same tools/call, Envoy pinned, one worker)\n")
        out("| arm | fleet, route called | Envoy CPU-µs/request | requests/s | ratio to 1 server (per round) | ratio of medians |")
        out("|---|---|---|---|---|---|")
        for arm in sorted(cpu):
            for target in sorted(cpu[arm], key=lambda t: (int(t.split("-")[0]), t)):
                figures = cpu[arm][target]
                ratio = ratios.get(arm, {}).get(target)
                size, where = target.split("-")
                label = f"{int(size):,} servers, {where} route" if int(size) > 1 else "1 server"
                cells = [spread(figures["envoy_cpu_us"]), spread(figures["rps"], 0)]
                if ratio:
                    cells += [f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]", f"{ratio['ratio_of_medians']:.2f}"]
                else:
                    cells += ["1", "1"]
                out(f"| {arm} | {label} | " + " | ".join(cells) + " |")
    if "services" in results:
        services = results["services"]
        groups = [g for g in services if g.startswith("fleet_")]
        sizes = sorted({s for g in groups for s in services[g]}, key=int)
        out("\n#### Services (criterion, in-process, one thread; median time)\n")
        out("| bench | " + " | ".join(f"{int(s):,} servers" for s in sizes) + " |")
        out("|---|" + "---|" * len(sizes))
        for group in groups:
            out(f"| `{group}` | " + " | ".join(" / ".join(format_ns(v) for v in services[group].get(s, [])) or "-" for s in sizes) + " |")
        if "resource_metadata_bytes" in services:
            out("\nRFC 9728 document (`scopes_supported`) size: " + ", ".join(f"{int(s):,} servers {b:,} bytes" for s, b in sorted(services["resource_metadata_bytes"].items(), key=lambda kv: int(kv[0]))))
    return "\n".join(lines) + "\n"


# ---- main ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,1000,10000", help="fleet sizes of the render, load and services phases")
    parser.add_argument("--cpu-sizes", default="1,1000,10000", help="fleet sizes of the cpu phase (1 is the baseline)")
    parser.add_argument("--modes", default=",".join(MODES), help="cpu phase: filter (the MCP filter alone) and/or chain")
    parser.add_argument("--tables", default="linear", help="cpu phase: linear (the rendered route list) and/or matcher (see matcher_variant)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the render and load phases")
    parser.add_argument("--cpu-rounds", type=int, default=5)
    parser.add_argument("--startup-rounds", type=int, default=2)
    parser.add_argument("--startup-forms", default="yaml,json,lean-stats", help="startup phase: the rendered files (yaml), as JSON (json), without per-cluster stats (lean-stats)")
    parser.add_argument("--service-rounds", type=int, default=1, help="runs of each criterion bench")
    parser.add_argument("--seconds", type=float, default=5, help="length of each closed-loop run")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--work", type=Path, default=ROOT / "target" / "bench" / "fleet", help="manifests and rendered fleets")
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench" / "fleet.json")
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSON", help="print the tables of earlier runs (merged) and exit")
    args = parser.parse_args()
    if args.report:
        # Several runs' figures side by side: lists of the same figure are joined
        # (their rounds are not paired across runs, so merge cpu phases only from one run).
        merged: dict = {"results": {}}
        for path in args.report:
            deep_merge(merged["results"], json.loads(path.read_text())["results"])
        print(report(merged), end="")
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.cpu_sizes = [int(s) for s in args.cpu_sizes.split(",") if s]
    args.modes = [m for m in args.modes.split(",") if m]
    args.phases = [p for p in args.phases.split(",") if p]
    args.tables = [t for t in args.tables.split(",") if t]
    args.startup_forms = [f for f in args.startup_forms.split(",") if f]
    for value, known in ((args.phases, PHASES), (args.modes, MODES), (args.tables, TABLES), (args.startup_forms, FORMS)):
        unknown = set(value) - set(known)
        if unknown:
            parser.error(f"unknown {sorted(unknown)}; known: {', '.join(known)}")
    if not REGISTRY.exists():
        parser.error(f"{REGISTRY} missing: cargo build --release -p mcp-registry")

    args.work.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="mcp-fleet-bench-"))
    port = upstream_port(args.work)
    upstream = Process("upstream", [python(), str(HERE / "fast_upstream.py"), str(port)], logs)
    document: dict = {"machine": machine(), "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    results: dict = {}
    document["results"] = results
    # The filter may be rebuilt during a long run on a shared checkout: say which ran.
    document["builds"] = {"wasm_sha256_at_start": sha256(wasm_path()), "mcp_registry_sha256": sha256(REGISTRY)}
    try:
        pin(upstream.pid, OTHERS_CPU)
        wait_for_http(port, "/", process=upstream)
        fleets = Fleets(args.work, sorted(set(args.sizes) | set(args.cpu_sizes)), port)
        fleets.sizes = args.sizes
        # One token for every call of the run: the read scope of each server called.
        called = {server_id(0), *(server_id(n - 1) for n in args.cpu_sizes)}
        called |= {server_id(n + r) for n in args.sizes for r in range(args.rounds)}
        scopes = " ".join(sorted(f"mcp.server.{sid}:tools.read" for sid in called))
        bearer = f"Bearer {token('bench-agent', scopes, exp=int(time.time()) + 86400)}"
        if "render" in args.phases:
            phase_render(fleets, args, results.setdefault("render", {}))
        # The cpu phase may run sizes the render phase did not.
        for size in args.cpu_sizes:
            fleets.ensure_rendered(size)
        if "load" in args.phases:
            phase_load(fleets, logs, bearer, args, results.setdefault("load", {}))
        if "startup" in args.phases:
            phase_startup(fleets, logs, args, results.setdefault("startup", {}))
        if "cpu" in args.phases:
            phase_cpu(fleets, logs, bearer, args, results.setdefault("cpu", {}))
            results["cpu_ratios"] = cpu_ratios(results["cpu"], args.cpu_sizes)
        if "services" in args.phases:
            phase_services(fleets, args, results.setdefault("services", {}))
    finally:
        upstream.stop()
        document["builds"]["wasm_sha256_at_end"] = sha256(wasm_path())
        document["builds"]["mcp_registry_sha256_at_end"] = sha256(REGISTRY)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=1))
        print(report(document), end="")
        print(f"results: {args.out}")
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
