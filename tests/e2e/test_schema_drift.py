"""Issue 16, schema drift: a server's `tools/list` answer compared with what its
manifest registers. Two servers built with the official SDKs (Python, JSON answers;
TypeScript, SSE answers) register `lookup` and `search` (tests/fixtures/issue16); the
test redeploys them (a restart on the same port) with changed catalogs and reads
`mcp_schema_drift_total{mcp_server, mcp_kind}` from Envoy's Prometheus stats: each kind
is counted once per change, however often the list is asked for, and a schema that
differs only in formatting or key order is no drift."""

from __future__ import annotations

import copy
import time

import pytest

from e2e.test_monitoring import DRIFT_METRIC
from harness import metric, prometheus, wait_until
from harness.catalog_servers import catalog_fleet, manifest_catalog, route_path
from harness.rpc import LEGACY, MODERN, result, rpc

SERVERS = {"drift-py": {"kind": "py", "sse": False}, "drift-ts": {"kind": "ts", "sse": True}}
KINDS = ("extra", "missing", "changed")
AGENT = "agent-drift"
LISTS_PER_STEP = 4
EXTRA_TOOL = {"name": "export_all", "description": "new in this release", "inputSchema": {"type": "object", "properties": {}}}


def version(server: str) -> str:
    return MODERN if SERVERS[server]["kind"] == "py" else LEGACY


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    logs = tmp_path_factory.mktemp("drift")
    with catalog_fleet(
        logs, {name: {"kind": spec["kind"], "sse": spec["sse"], "catalog": manifest_catalog(name)} for name, spec in SERVERS.items()}
    ) as running:
        yield running


def list_tools(fleet, server: str, times: int = LISTS_PER_STEP) -> list[str]:
    """Lists `times` times (the first one retried while Envoy drops a connection to the
    server's previous process); the names the agent was shown the last time."""
    names: list[str] = []
    for n in range(times):
        for attempt in range(20):
            response = rpc(fleet.port, route_path(server), "tools/list", {}, f"{server}-{time.monotonic_ns()}", AGENT,
                           f"mcp.server.{server}:tools.read", version(server))
            if response.status != 503 or n > 0:
                break
            time.sleep(0.1)
        names = [tool["name"] for tool in result(response)["tools"]]
    return names


def drift(fleet, server: str) -> dict[str, float]:
    samples = prometheus(fleet.envoy.admin_port)
    return {kind: metric(samples, DRIFT_METRIC, mcp_server=server, mcp_kind=kind) for kind in KINDS}


def settled(fleet, server: str, expected: dict[str, int]) -> dict[str, float]:
    """The counters once they reach `expected` (or what they are after a few seconds)."""

    def reached():
        found = drift(fleet, server)
        return found if found == expected else None

    try:
        return wait_until(reached, timeout=5)
    except TimeoutError:
        return drift(fleet, server)


def drift_log_lines(fleet, server: str) -> list[str]:
    return [line for line in fleet.envoy.log().splitlines() if "drift" in line.lower() and server in line]


def with_lookup_schema(catalog: dict, change) -> dict:
    changed = copy.deepcopy(catalog)
    (lookup,) = [tool for tool in changed["tools"] if tool["name"] == "lookup"]
    change(lookup["inputSchema"])
    return changed


@pytest.mark.parametrize("server", SERVERS)
def test_drift_is_counted_once_per_kind_per_change(gateway, server):
    fleet, servers = gateway
    registered = manifest_catalog(server)

    # As registered: nothing to count, however often it is listed.
    assert list_tools(fleet, server) == ["lookup", "search"]
    assert settled(fleet, server, {k: 0 for k in KINDS}) == {k: 0 for k in KINDS}
    assert drift_log_lines(fleet, server) == []

    # Release 2: lookup's schema grows a property, search is gone, a new tool appears.
    release2 = with_lookup_schema(registered, lambda s: s["properties"].update(currency={"type": "string"}))
    release2["tools"] = [t for t in release2["tools"] if t["name"] != "search"] + [EXTRA_TOOL]
    servers[server].restart(release2)
    shown = list_tools(fleet, server)
    # The tool the registry does not know stays hidden (unregistered_tools: hide).
    assert shown == ["lookup"], shown
    once = {"extra": 1, "missing": 1, "changed": 1}
    assert settled(fleet, server, once) == once
    logged = drift_log_lines(fleet, server)
    assert logged, "drift was not logged"
    # Asked again and again: still counted and logged once.
    list_tools(fleet, server, 2 * LISTS_PER_STEP)
    assert drift(fleet, server) == once
    assert drift_log_lines(fleet, server) == logged

    # Release 3: lookup's schema changes again (the rest as in release 2): one more
    # change of that kind only.
    release3 = copy.deepcopy(release2)
    (lookup,) = [t for t in release3["tools"] if t["name"] == "lookup"]
    lookup["inputSchema"]["properties"]["region"]["maxLength"] = 8
    servers[server].restart(release3)
    list_tools(fleet, server)
    twice = {"extra": 1, "missing": 1, "changed": 2}
    assert settled(fleet, server, twice) == twice

    # Release 4: back to the registered tools, the schemas written with their keys in
    # another order (and the SDK's own formatting): the same schemas, no drift.
    release4 = copy.deepcopy(registered)
    for tool in release4["tools"]:
        tool["inputSchema"] = dict(reversed(list(tool["inputSchema"].items())))
    servers[server].restart(release4)
    assert list_tools(fleet, server) == ["lookup", "search"]
    assert settled(fleet, server, twice) == twice
