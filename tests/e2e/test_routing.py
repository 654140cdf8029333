"""Headers set from the body drive Envoy's route selection."""

from __future__ import annotations

import json

import pytest
from harness import MCP_CLUSTER, connection_manager, fallback_routes, start_echo, start_gateway, request

from e2e.helpers import modern_call


def add_tool_route(config):
    """Sends get_account_balance calls to cluster `balances`, the rest stays as rendered.
    The virtual host's map of exact paths picks one route per path, so the host routes
    by the list it falls back to (which decides the same) with the header route first;
    the new route is the same server's (its metadata), as the filter's route re-check
    requires."""
    routes = fallback_routes(config)
    (server_route,) = [r for r in routes if r["match"] == {"path": "/mcp"}]
    (host,) = connection_manager(config)["route_config"]["virtual_hosts"]
    del host["matcher"]
    host["routes"] = routes
    routes.insert(
        0,
        {
            "match": {
                "path": "/mcp",
                "headers": [{"name": "x-mcp-tool-name", "string_match": {"exact": "get_account_balance"}}],
            },
            "metadata": server_route["metadata"],
            "route": {"cluster": "balances"},
        },
    )
    clusters = config["static_resources"]["clusters"]
    (server_cluster,) = [c for c in clusters if c["name"] == MCP_CLUSTER]
    balances = json.loads(json.dumps(server_cluster))
    balances["name"] = balances["load_assignment"]["cluster_name"] = "balances"
    clusters.append(balances)


@pytest.fixture
def routed_gateway(logs, echo, authz):
    other, other_port = start_echo(logs, "b")
    envoy, port = start_gateway(
        logs, {MCP_CLUSTER: echo, "balances": other_port, **authz.upstreams()}, mutate=add_tool_route
    )
    yield port
    envoy.stop()
    other.stop()


def upstream_of(port, tool, extra=()):
    body, headers = modern_call(tool)
    response = request(port, "POST", "/mcp", body, headers + list(extra))
    assert response.status == 200, response.body
    return response.json()["upstream"]


def test_route_on_tool_name(routed_gateway):
    assert upstream_of(routed_gateway, "get_account_balance") == "b"
    assert upstream_of(routed_gateway, "query_transactions") == "a"


def test_forged_tool_header_does_not_steer_the_route(routed_gateway):
    forged = [("x-mcp-tool-name", "get_account_balance")]
    assert upstream_of(routed_gateway, "query_transactions", forged) == "a"
