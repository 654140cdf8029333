"""Catalog servers for the issue 16 tests (what each agent sees, argument validation,
schema drift): MCP servers built with the official Python SDK (catalog_server.py) and
TypeScript SDK (catalog_server.mjs) that advertise a catalog read from a JSON file,
each on a free loopback port, stopped by PID and restartable on the same port with
another catalog; and the fixture fleet (tests/fixtures/issue16) rendered by the real
`mcp-registry render` and run by the real Envoy, authz-service (with the rendered
schemas) and ratelimit-service (harness/fleet.py's Fleet).

Catalog format (JSON):

    {"name": "...", "version": "...",
     "tools": [{"name": "...", "description": "...", "inputSchema": {...}}, ...],
     "prompts": [{"name": "..."}], "resources": [{"uri": "...", "name": "..."}],
     "resourceTemplates": [{"uriTemplate": "...", "name": "..."}]}

`manifest_catalog` builds one from a fixture manifest: its registered tools with their
registered schemas (so a server and the registry agree until a test says otherwise).
"""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager
from pathlib import Path

import yaml

from .fleet import Fleet
from .observe import json_lines
from .procs import ROOT, Process, dispatch_log, free_port, python, wait_for_http
from .servers import WEATHER_DIR

FIXTURES = ROOT / "tests" / "fixtures" / "issue16"
PY_SERVER = ROOT / "tests" / "harness" / "catalog_server.py"
TS_SERVER = ROOT / "tests" / "harness" / "catalog_server.mjs"

PROMPTS = [{"name": "summarise", "description": "Summarise a document."}, {"name": "triage", "description": "Triage a ticket."}]
RESOURCES = [{"uri": "docs://handbook", "name": "handbook"}, {"uri": "docs://faq", "name": "faq"}]
TEMPLATES = [{"uriTemplate": "docs://pages/{page}", "name": "page"}]


def registered_schema(server_id: str, tool: str, source: Path = FIXTURES) -> dict:
    """The schema a fixture manifest registers for `tool`, parsed."""
    manifest = yaml.safe_load((source / f"{server_id}.yaml").read_text())
    (ref,) = [t["schema_ref"] for t in manifest["tools"] if t["name"] == tool]
    return json.loads((source / ref).read_text())


def manifest_catalog(server_id: str, extra_tools: list[dict] = (), source: Path = FIXTURES) -> dict:
    """A catalog with exactly the tools (and schemas) the fixture manifest registers,
    in its order, then `extra_tools`; a few prompts, resources and templates."""
    manifest = yaml.safe_load((source / f"{server_id}.yaml").read_text())
    tools = [
        {"name": t["name"], "description": f"{t['name']} (registered)", "inputSchema": registered_schema(server_id, t["name"], source)}
        for t in manifest["tools"]
    ]
    return {
        "name": server_id,
        "version": str(manifest["version"]),
        "tools": tools + list(extra_tools),
        "prompts": PROMPTS,
        "resources": RESOURCES,
        "resourceTemplates": TEMPLATES,
    }


class CatalogServer:
    """One catalog server: `kind` "py" (official Python SDK) or "ts" (official
    TypeScript SDK), JSON or SSE answers, lists paged `page_size` entries at a time
    (0: one page). Every HTTP request it receives is in `header_log`, every tool call
    its SDK dispatched in `dispatch_log`. `flags` are passed to the server's command
    line as they are (catalog_server.py: `--claim-versions a,b`, `--refuse-initialize`,
    `--fail-tools`)."""

    _versions = itertools.count(1)

    def __init__(
        self, kind: str, name: str, log_dir: Path, catalog: dict, sse: bool = False, page_size: int = 0, flags: tuple[str, ...] = ()
    ):
        if kind not in ("py", "ts"):
            raise ValueError(f"kind must be py or ts, not {kind!r}")
        if kind == "ts" and not (WEATHER_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
            raise FileNotFoundError(f"{WEATHER_DIR}/node_modules missing; run scripts/setup.sh (npm ci)")
        self.kind, self.name, self.log_dir = kind, name, Path(log_dir)
        self.sse, self.page_size, self.flags = sse, page_size, tuple(flags)
        self.port = free_port()
        self.header_log = self.log_dir / f"seen-{name}.jsonl"
        self.dispatch_log = dispatch_log(self.header_log)
        self.process: Process | None = None
        self.start(catalog)

    def _argv(self, catalog_path: Path) -> list[str]:
        program = [python(), str(PY_SERVER)] if self.kind == "py" else ["node", str(TS_SERVER)]
        argv = program + [
            "--port", str(self.port), "--catalog", str(catalog_path), "--page-size", str(self.page_size),
            "--header-log", str(self.header_log), "--dispatch-log", str(self.dispatch_log),
        ]
        return argv + (["--sse"] if self.sse else []) + list(self.flags)

    def start(self, catalog: dict) -> None:
        version = next(self._versions)
        catalog_path = self.log_dir / f"catalog-{self.name}-{version}.json"
        catalog_path.write_text(json.dumps(catalog, indent=1))
        self.catalog = catalog
        self.process = Process(f"{self.name}-{self.port}-{version}", self._argv(catalog_path), self.log_dir)
        try:
            # Any HTTP answer on /mcp means it is listening (a GET is a 4xx for both SDKs).
            wait_for_http(self.port, "/mcp", process=self.process)
        except Exception:
            self.process.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.process.log()[-4000:]}")

    def restart(self, catalog: dict) -> None:
        """Stops the server and starts it again on the same port with `catalog` (what a
        team's redeploy of a changed server looks like to the gateway)."""
        self.stop()
        self.start(catalog)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def posts(self, server_id: str | None = None) -> list[dict[str, str]]:
        """Headers of each POST it received (optionally only those the gateway labelled
        for `server_id`), as a dict (last copy wins)."""
        posts = [dict(r["headers"]) for r in json_lines(self.header_log) if r["method"] == "POST"]
        return [p for p in posts if server_id is None or p.get("x-mcp-server-id") == server_id]

    def raw_posts(self) -> list[list[tuple[str, str]]]:
        """Headers of each POST, in order, repeats kept."""
        return [[tuple(h) for h in r["headers"]] for r in json_lines(self.header_log) if r["method"] == "POST"]

    def dispatches(self) -> list[dict]:
        """The tools/call requests its SDK dispatched: {"name", "arguments"} each."""
        return json_lines(self.dispatch_log)


def route_path(server_id: str) -> str:
    """Where the rendered gateway exposes a fixture server (the default path)."""
    return f"/{server_id}/mcp"


def start_fleet(log_dir: Path, endpoints: dict[str, int]) -> Fleet:
    """The fixture manifests of the servers in `endpoints` (each pointed at its loopback
    port) rendered, and the gateway on what was rendered (harness/fleet.py: the
    authz-service with the rendered policy and schemas)."""
    return Fleet(log_dir, endpoints, source=FIXTURES)


def start_servers(log_dir: Path, specs: dict[str, dict]) -> dict[str, CatalogServer]:
    """Starts one CatalogServer per entry (`CatalogServer` keyword arguments plus
    `kind` and `catalog`); stops the ones started if one fails."""
    started: dict[str, CatalogServer] = {}
    try:
        for name, spec in specs.items():
            started[name] = CatalogServer(name=name, log_dir=log_dir, **spec)
    except Exception:
        for server in started.values():
            server.stop()
        raise
    return started


@contextmanager
def catalog_fleet(log_dir: Path, specs: dict[str, dict], endpoints=None):
    """The servers of `specs` (see `start_servers`) and the rendered gateway in front
    of them; `endpoints(servers)` maps each fixture server id to the port that serves
    it (default: each spec's own server). Everything is stopped at the end, also when
    starting fails."""
    servers = start_servers(log_dir, specs)
    try:
        ports = endpoints(servers) if endpoints else {name: server.port for name, server in servers.items()}
        fleet = start_fleet(log_dir, ports)
        try:
            yield fleet, servers
        finally:
            fleet.stop()
    finally:
        for server in servers.values():
            server.stop()
