"""A route on gateway headers that sends one server's labelled requests to another
server's cluster is refused, not executed there under the first server's policy and
audit.

The filter clears the route cache after labelling, so that routes on `x-mcp-*` headers
work; on Envoy 1.40 its own read of the route right after clearing still returns the
route picked before the labels (found by the issue 17 canary spike), so it cannot see
the re-pick. ext_authz asks for the route after that and sends the picked route's
`mcp_gateway` metadata (`route_metadata_context_namespaces` in envoy/fleet.yaml): the
authz-service compares the route's server with the label and refuses (500, -31000).

The rendered routes match the path only (a hash map on the exact path), so this needs
an operator's own route: the test moves the one server's path out of the map into the
route list and puts a route on `x-mcp-tool-name` ahead of it, to another upstream."""

from __future__ import annotations

import json

from e2e.helpers import modern_call
from harness import MCP_CLUSTER, Authz, Ratelimit, audit_records, request, start_echo, start_gateway
from harness.envoy import connection_manager, fallback_routes, host_path_map


def header_route_to_another_server(config: dict) -> None:
    (host,) = connection_manager(config)["route_config"]["virtual_hosts"]
    assert "/mcp" in host_path_map(host)
    path_map = host["matcher"]["matcher_tree"]["exact_match_map"]["map"]
    entry = path_map.pop("/mcp")
    # The map may not be empty: it keeps the route under a path no test sends.
    path_map["/not-sent"] = json.loads(json.dumps(entry))
    own = entry["action"]["typed_config"]
    own.pop("@type")  # a Route Any in the map, a plain Route in the list
    other = json.loads(json.dumps(own))
    other["name"] = "operator-route-on-a-gateway-header"
    other["match"] = {"path": "/mcp", "headers": [{"name": "x-mcp-tool-name", "string_match": {"exact": "get_account_balance"}}]}
    other["route"]["cluster"] = "other-server"
    other["metadata"]["filter_metadata"]["mcp_gateway"].update(server_id="hr-directory", server_version="0.4.0")
    routes = fallback_routes(config)
    routes[:0] = [other, own]
    clusters = config["static_resources"]["clusters"]
    mcp = next(c for c in clusters if c["name"] == MCP_CLUSTER)
    second = json.loads(json.dumps(mcp))
    second["name"] = "other-server"
    second["load_assignment"]["cluster_name"] = "other-server"
    clusters.append(second)


def test_a_labelled_request_routed_to_another_server_is_refused(tmp_path):
    started = []
    try:
        own, own_port = start_echo(tmp_path, name="financial-data")
        started.append(own)
        other, other_port = start_echo(tmp_path, name="other")
        started.append(other)
        authz = Authz(tmp_path)
        started.append(authz)
        ratelimit = Ratelimit(tmp_path)
        started.append(ratelimit)
        upstreams = {MCP_CLUSTER: own_port, "other-server": other_port, **authz.upstreams(), **ratelimit.upstreams()}
        envoy, port = start_gateway(tmp_path, upstreams, mutate=header_route_to_another_server)
        started.append(envoy)

        # The header route takes only the labelled get_account_balance: another tool
        # stays on the server's own route (the control).
        body, headers = modern_call("get_account_balance", 5, {"account_id": "acc-001"})
        refused = request(port, "POST", "/mcp", body, headers)
        body, headers = modern_call("query_transactions", 6, {"account_id": "acc-001"})
        control = request(port, "POST", "/mcp", body, headers)
        records = audit_records(envoy.audit_path, until=lambda rs: {5, 6} <= {r["jsonrpc_id"] for r in rs})
    finally:
        for process in reversed(started):
            process.stop()
    assert control.status == 200, control.body[:300]
    assert json.loads(control.body)["upstream"] == "financial-data"
    assert refused.status == 500, refused.body[:300]
    error = refused.json()["error"]
    assert error["code"] == -31000
    assert "labelled for MCP server financial-data, routed to hr-directory" in error["message"]
    assert refused.json()["id"] == 5
    record = next(r for r in records if r["jsonrpc_id"] == 5)
    assert (record["decision"], record["error_code"], record["http_status"]) == ("gateway_error", -31000, 500), record
