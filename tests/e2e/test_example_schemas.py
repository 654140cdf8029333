"""The example fleet (registry/examples) and the server the demo adds live
(demo/fleet-addition) show no schema drift: their servers, built with the official SDKs
(financial-data, hr-directory, knowledge-base: Python; weather: TypeScript v1),
advertise in `tools/list` exactly the input schemas their manifests register, so a fresh
deployment of the examples (and the demo) counts no `mcp_schema_drift_total`.

The registry is the source of truth: each listed `inputSchema` must equal the
registered file as JSON values (key order and formatting aside, which is what the
gateway's canonical-JSON digest ignores too), and Envoy, having seen every server's
list, must report no drift. The zero is then shown to be a measurement, not a
detector that never ran: the same fleet, after one registered schema changes (a live
render), counts that tool as `changed`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest
import yaml

from e2e.helpers import connect
from e2e.test_monitoring import DRIFT_METRIC
from harness import ROOT, metric, prometheus, start_mcp_server, wait_until
from harness.fleet import Fleet
from harness.registry import EXAMPLES, manifest_text
from harness.servers import start_hr_directory, start_knowledge_base, start_weather

ADDITION = ROOT / "demo" / "fleet-addition"
EXAMPLE_SERVERS = ("financial-data", "hr-directory", "weather")
ADDED = "knowledge-base"
SOURCES = {**{server: EXAMPLES for server in EXAMPLE_SERVERS}, ADDED: ADDITION}
# Every tool of every server visible: the tools.read scopes, and the two tools whose
# manifests ask more (a list shows only what the caller may call).
SCOPES = " ".join(
    [f"mcp.server.{s}:tools.read" for s in SOURCES]
    + ["mcp.server.hr-directory:org.read", "mcp.server.financial-data:tools.write"]
)


def registered(server_id: str) -> dict[str, dict]:
    """Tool name -> registered JSON Schema (parsed), from the server's manifest."""
    source = SOURCES[server_id]
    manifest = yaml.safe_load((source / f"{server_id}.yaml").read_text())
    return {tool["name"]: json.loads((source / tool["schema_ref"]).read_text()) for tool in manifest["tools"]}


def register_addition(fleet: Fleet, port: int) -> None:
    """What the demo does midway (demo/run_demo.py): the knowledge-base manifest and
    its schemas copied into the fleet's manifests, rendered live."""
    shutil.copytree(ADDITION / "schemas", fleet.manifests / "schemas", dirs_exist_ok=True)
    (fleet.manifests / f"{ADDED}.yaml").write_text(manifest_text(ADDED, port, ADDITION))
    fleet.render()


@pytest.fixture
def fleet(logs: Path):
    started = []
    try:
        started.append(start_mcp_server(logs, logs / "seen-financial-data.jsonl"))
        started.append(start_hr_directory(logs, header_log=logs / "seen-hr-directory.jsonl"))
        started.append(start_weather(logs, header_log=logs / "seen-weather.jsonl"))
        started.append(start_knowledge_base(logs, header_log=logs / "seen-knowledge-base.jsonl"))
        running = Fleet(logs, {server: port for server, (_, port) in zip(EXAMPLE_SERVERS, started)})
    except Exception:
        for process, _ in started:
            process.stop()
        raise
    try:
        register_addition(running, started[-1][1])
        yield running
    finally:
        running.stop()
        for process, _ in started:
            process.stop()


def listed(fleet: Fleet, server: str) -> dict[str, dict]:
    """Tool name -> inputSchema of the server's tools/list through the gateway (every
    page), with the official Python SDK client in its default mode."""

    async def run():
        async with connect(fleet.url(server), mode="auto", scopes=SCOPES) as client:
            tools, cursor = {}, None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.update({tool.name: tool.input_schema for tool in page.tools})
                cursor = page.next_cursor
                if not cursor:
                    return tools

    return anyio.run(run)


def listed_once_routed(fleet: Fleet, server: str) -> dict[str, dict]:
    """`listed`, retried while a live render is still reaching Envoy and the services
    (the new route answers 404, or the token's scope is not in the policy yet)."""
    errors = []

    def attempt():
        try:
            return listed(fleet, server)
        except Exception as error:  # the SDK raises on an HTTP error status
            errors.append(error)
            return None

    try:
        return wait_until(attempt, timeout=15, interval=0.3)
    except TimeoutError:
        raise AssertionError(f"{server} not listed through the gateway: {errors[-1]!r}") from errors[-1]


def drift_samples(fleet: Fleet) -> dict[tuple[str, str], float]:
    """(server, kind) -> value of every mcp_schema_drift_total sample Envoy exports."""
    return {
        (labels["mcp_server"], labels["mcp_kind"]): value
        for (name, label_set), value in prometheus(fleet.envoy.admin_port).items()
        if name == DRIFT_METRIC
        for labels in [dict(label_set)]
    }


def test_demo_servers_advertise_their_registered_schemas_and_show_no_drift(fleet):
    advertised = {server: listed_once_routed(fleet, server) for server in SOURCES}

    # Every server's whole list went through the filter, which counts drift while it
    # reads the answer, before the client gets it.
    assert {key: value for key, value in drift_samples(fleet).items() if value} == {}
    for server in SOURCES:
        schemas = registered(server)
        assert sorted(advertised[server]) == sorted(schemas), server
        for tool, schema in schemas.items():
            assert advertised[server][tool] == schema, (server, tool, advertised[server][tool])

    # The detector ran: one registered schema changes (in the fleet's copy of the
    # manifests, rendered live), and the same server's next list counts that tool.
    schema_file = fleet.manifests / "schemas" / "get_alerts_v1.json"
    changed = json.loads(schema_file.read_text())
    changed["properties"]["region"]["maxLength"] = 2
    schema_file.write_text(json.dumps(changed))
    fleet.render()

    def counted():
        listed(fleet, "weather")
        return metric(prometheus(fleet.envoy.admin_port), DRIFT_METRIC, mcp_server="weather", mcp_kind="changed")

    assert wait_until(counted, timeout=15, interval=0.5) == 1
    assert {key: value for key, value in drift_samples(fleet).items() if value} == {("weather", "changed"): 1}
