"""Issue 16, argument validation and `Mcp-Param-*` headers, end to end: servers built
with the official SDKs behind one gateway rendered from tests/fixtures/issue16, with
the registered schemas (schemas/*.json there) in `enforce`, `report` and `off` mode.

The servers validate nothing themselves and log every request that reaches them
(headers) and every tool call their SDK dispatches, so "refused by the gateway" is
checked where it matters: the server never saw the request. (The Python SDK does check
`Mcp-Param-*` headers itself, as the spec asks of servers: a 400 -32020 alone would not
show that the gateway refused it.)"""

from __future__ import annotations

import pytest

from harness import audit_records, prometheus, wait_until
from harness.catalog_servers import catalog_fleet, manifest_catalog, registered_schema, route_path
from harness.rpc import LEGACY, MODERN, content_type, mirrored, result, rpc, sentinel

AGENT = "agent-validation"
ENFORCE = ("val-py-enforce", "val-ts-enforce")
# val-py-report and val-py-off are two registrations of one Python server process.
SHARED = "val-py-shared"
PROCESS = {"val-py-enforce": "val-py-enforce", "val-ts-enforce": "val-ts-enforce", "val-py-report": SHARED, "val-py-off": SHARED}
SERVERS = tuple(PROCESS)

# Each invalid call: tool, arguments (None: no `arguments` member at all), the JSON
# pointer of the first failing place ("(root)" for the arguments object itself), a
# word the error names.
INVALID = {
    "wrong-type": ("lookup", {"region": 5}, "/region", "string"),
    "missing-required": ("search", {"filters": {}}, "(root)", "query"),
    "extra-field": ("transfer", {"to": "acc-2", "amount": 5, "memo": "rent"}, "(root)", "memo"),
    "nested-wrong-type": ("search", {"query": "q", "filters": {"tags": ["a", 7]}}, "/filters/tags/1", "string"),
    "absent-arguments": ("admin_reset", None, "(root)", "confirm"),
}
VALID = {
    "valid-lookup": ("lookup", {"region": "eu", "limit": 3}),
    # report's schema (draft-07) does not forbid other properties.
    "valid-extra-allowed": ("report", {"month": "2026-11", "format": "pdf"}),
    "valid-transfer": ("transfer", {"to": "acc-2", "amount": 5}),
}


def scopes() -> str:
    return " ".join(f"mcp.server.{server}:{area}" for server in SERVERS for area in ("tools.read", "admin", "tools.write"))


def version(server: str) -> str:
    # The TypeScript SDK v1 server speaks up to 2025-11-25.
    return LEGACY if server == "val-ts-enforce" else MODERN


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    logs = tmp_path_factory.mktemp("validation")
    with catalog_fleet(
        logs,
        {
            "val-py-enforce": {"kind": "py", "catalog": manifest_catalog("val-py-enforce")},
            "val-ts-enforce": {"kind": "ts", "sse": True, "catalog": manifest_catalog("val-ts-enforce")},
            SHARED: {"kind": "py", "catalog": manifest_catalog("val-py-report")},
        },
        lambda servers: {server: servers[PROCESS[server]].port for server in SERVERS},
    ) as running:
        yield running


def call_tool(fleet, server, tool, arguments, request_id, headers=None):
    """A tools/call; without `headers`, with the Mcp-Param-* headers a compliant client
    mirrors from the arguments (2026-07-28 only)."""
    params = {"name": tool} if arguments is None else {"name": tool, "arguments": arguments}
    if headers is None:
        headers = mirrored(registered_schema(server, tool), arguments) if version(server) == MODERN else []
    return rpc(fleet.port, route_path(server), "tools/call", params, request_id, AGENT, scopes(), version(server), list(headers))


def records_for(fleet, ids: set[str]) -> dict[str, dict]:
    records = audit_records(fleet.audit_path, until=lambda rs: ids <= {r.get("jsonrpc_id") for r in rs})
    return {r["jsonrpc_id"]: r for r in records if r.get("jsonrpc_id") in ids}


def violations(samples: dict, server: str, tool: str) -> float:
    """mcp_argument_violations_total of one server and tool, whatever else it is labelled with."""
    found = 0.0
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if name == "mcp_argument_violations_total" and labels.get("mcp_server") == server and labels.get("mcp_tool") == tool:
            found += value
    return found


@pytest.mark.parametrize("server", ENFORCE)
def test_invalid_arguments_are_refused_before_the_server(gateway, server):
    fleet, servers = gateway
    backend = servers[PROCESS[server]]
    seen_before, dispatched_before = len(backend.posts(server)), len(backend.dispatches())
    for case, (tool, arguments, pointer, word) in INVALID.items():
        request_id = f"{server}-{case}"
        response = call_tool(fleet, server, tool, arguments, request_id)
        assert response.status == 400, (case, response.status, response.body)
        assert content_type(response) == "application/json", case
        body = response.json()
        assert body["jsonrpc"] == "2.0" and body["id"] == request_id, body
        error = body["error"]
        assert error["code"] == -32602, (case, error)
        # The first failing place, named by its JSON pointer.
        assert error["message"].startswith(f"Invalid arguments for tool {tool}: {pointer}: "), (case, error)
        assert word in error["message"], (case, error)
    assert len(backend.posts(server)) == seen_before, "an invalid call reached the server"
    assert len(backend.dispatches()) == dispatched_before

    for case, (tool, arguments) in VALID.items():
        response = call_tool(fleet, server, tool, arguments, f"{server}-{case}")
        assert not result(response).get("isError"), (case, response.body)
    assert backend.dispatches()[dispatched_before:] == [
        {"method": "tools/call", "name": tool, "arguments": arguments} for tool, arguments in VALID.values()
    ]

    ids = {f"{server}-{case}" for case in [*INVALID, *VALID]}
    records = records_for(fleet, ids)
    for case, (tool, *_rest) in INVALID.items():
        record = records[f"{server}-{case}"]
        assert (record["decision"], record["http_status"], record["error_code"], record["tool_name"]) == ("invalid", 400, -32602, tool), record
    for case in VALID:
        assert records[f"{server}-{case}"]["decision"] == "allowed"


def test_report_mode_forwards_audits_and_counts_invalid_calls_and_off_mode_does_not(gateway):
    """The same invalid calls: `report` forwards them and records each violation
    (audit `schema_violation`, mcp_argument_violations_total); `off` (the same server
    process) forwards them without a trace."""
    fleet, servers = gateway
    server, backend = "val-py-report", servers[SHARED]
    dispatched = len(backend.dispatches())
    for case, (tool, arguments, _pointer, _word) in INVALID.items():
        response = call_tool(fleet, server, tool, arguments, f"{server}-{case}")
        # The server's own answer (it validates nothing: it echoes what it got).
        assert response.status == 200 and not result(response).get("isError"), (case, response.body)
    for case, (tool, arguments) in VALID.items():
        assert not result(call_tool(fleet, server, tool, arguments, f"{server}-{case}")).get("isError")
    expected_dispatch = [(tool, arguments) for tool, arguments, *_ in INVALID.values()] + list(VALID.values())
    assert [(d["name"], d["arguments"]) for d in backend.dispatches()[dispatched:]] == expected_dispatch

    records = records_for(fleet, {f"{server}-{case}" for case in [*INVALID, *VALID]})
    for case, (tool, _arguments, pointer, word) in INVALID.items():
        record = records[f"{server}-{case}"]
        assert record["decision"] == "allowed" and record["http_status"] == 200, record
        violation = record.get("schema_violation")
        assert isinstance(violation, str) and violation.startswith(f"{pointer}: ") and word in violation, (case, violation)
        assert len(violation.encode()) <= 256
    for case in VALID:
        assert records[f"{server}-{case}"].get("schema_violation") is None, case

    per_tool: dict[str, int] = {}
    for tool, *_ in INVALID.values():
        per_tool[tool] = per_tool.get(tool, 0) + 1

    def counted():
        samples = prometheus(fleet.envoy.admin_port)
        return samples if all(violations(samples, server, tool) >= n for tool, n in per_tool.items()) else None

    samples = wait_until(counted)
    # Each invalid call counted once, valid ones (report's extra field) not at all.
    assert {tool: violations(samples, server, tool) for tool in ("lookup", "search", "transfer", "admin_reset", "report")} == {
        "lookup": 1, "search": 2, "transfer": 1, "admin_reset": 1, "report": 0,
    }

    off = "val-py-off"
    for case, (tool, arguments, *_) in INVALID.items():
        assert not result(call_tool(fleet, off, tool, arguments, f"{off}-{case}")).get("isError"), case
    records = records_for(fleet, {f"{off}-{case}" for case in INVALID})
    assert all(r["decision"] == "allowed" and r.get("schema_violation") is None for r in records.values()), records
    samples = prometheus(fleet.envoy.admin_port)
    assert all(violations(samples, off, tool) == 0 for tool, *_ in INVALID.values())


# Mcp-Param cases on `lookup` (region: x-mcp-header Region) and `transfer` (urgent:
# boolean, x-mcp-header Urgent): arguments, the Mcp-Param-* headers sent, refused?
PARAM_CASES = {
    "param-match": ({"region": "eu"}, [("Mcp-Param-Region", "eu")], False),
    # Headers no schema annotates: forwarded as they came (the spec asks intermediaries
    # to), a sentinel-looking value not decoded.
    "param-unknown-forwarded": (
        {"region": "eu"},
        [("Mcp-Param-Region", "eu"), ("Mcp-Param-Colour", "blue"), ("Mcp-Param-Trace-Note", sentinel("über"))],
        False,
    ),
    "param-sentinel-match": ({"region": "Zürich"}, [("Mcp-Param-Region", sentinel("Zürich"))], False),
    "param-mismatch": ({"region": "eu"}, [("Mcp-Param-Region", "us")], True),
    "param-sentinel-mismatch": ({"region": "Zürich"}, [("Mcp-Param-Region", sentinel("Zurich"))], True),
    "param-missing-header": ({"region": "eu"}, [], True),
    "param-header-without-argument": ({"limit": 2}, [("Mcp-Param-Region", "eu")], True),
    "param-repeated": ({"region": "eu"}, [("Mcp-Param-Region", "eu"), ("Mcp-Param-Region", "eu")], True),
    "param-bool-match": ({"to": "acc-2", "amount": 5, "urgent": True}, [("Mcp-Param-Urgent", "true")], False),
    "param-bool-mismatch": ({"to": "acc-2", "amount": 5, "urgent": True}, [("Mcp-Param-Urgent", "false")], True),
}


@pytest.mark.parametrize("server", ("val-py-enforce", "val-py-report", "val-py-off"))
def test_mcp_param_header_mismatch_is_refused_in_every_mode(gateway, server):
    fleet, servers = gateway
    backend = servers[PROCESS[server]]
    for case, (arguments, headers, refused) in PARAM_CASES.items():
        tool = "transfer" if "urgent" in arguments else "lookup"
        request_id = f"{server}-{case}"
        seen = len(backend.posts(server))
        raw_seen = len(backend.raw_posts())
        response = call_tool(fleet, server, tool, arguments, request_id, headers)
        if not refused:
            assert not result(response).get("isError"), (case, response.body)
            assert len(backend.posts(server)) == seen + 1, case
            (received,) = backend.raw_posts()[raw_seen:]
            # Every Mcp-Param-* header arrives once, with its value as sent.
            arrived = sorted((name, value) for name, value in received if name.startswith("mcp-param-"))
            assert arrived == sorted((name.lower(), value) for name, value in headers), (case, arrived)
            continue
        assert response.status == 400, (case, response.status, response.body)
        body = response.json()
        assert body["id"] == request_id and body["error"]["code"] == -32020, (case, body)
        assert len(backend.posts(server)) == seen, f"{case}: reached the server"
    refusals = {f"{server}-{case}" for case, (_, _, refused) in PARAM_CASES.items() if refused}
    records = records_for(fleet, refusals)
    assert all((r["decision"], r["error_code"]) == ("invalid", -32020) for r in records.values()), records
