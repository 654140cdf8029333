"""Issue 16, per-caller lists: agents see only the tools (prompts, resources) they may
use. Four servers built with the official SDKs (Python: JSON and SSE answers,
TypeScript: JSON and SSE) serve the same five registered tools, two per page, behind
one gateway rendered from tests/fixtures/issue16; two agents with different scopes list
them through the real Envoy, authz-service and ratelimit-service.

Registered scopes (fixture manifests): admin_reset needs `:admin`, transfer needs
`:tools.write`, the other three only `:tools.read`; prompts/get and resources/read need
`:prompts.use` / `:resources.use` beyond the `*.read` scopes that listing needs. The
servers mark every list `cacheScope: "public"`: a list the gateway filtered per caller
must come out `private`."""

from __future__ import annotations

import anyio
import pytest

from e2e.helpers import connect
from harness import audit_records, metric, prometheus, wait_until
from harness.catalog_servers import catalog_fleet, manifest_catalog, registered_schema, route_path
from harness.rpc import LEGACY, MODERN, content_type, messages, mirrored, result, rpc

REGISTERED = ["lookup", "search", "admin_reset", "transfer", "report"]
# Advertised by two servers, registered by none: hidden on vis-py-json (the default),
# shown on vis-ts-json (`unregistered_tools: show`).
UNREGISTERED = {"name": "debug_dump", "description": "not registered", "inputSchema": {"type": "object"}}
SERVERS = {
    "vis-py-json": {"kind": "py", "sse": False, "extra": [UNREGISTERED]},
    "vis-py-sse": {"kind": "py", "sse": True, "extra": []},
    "vis-ts-json": {"kind": "ts", "sse": False, "extra": [UNREGISTERED]},
    "vis-ts-sse": {"kind": "ts", "sse": True, "extra": []},
}
PAGE_SIZE = 2
READER, ADMIN = "agent-reader", "agent-admin"
# Valid arguments for each registered tool.
ARGUMENTS = {
    "lookup": {"region": "eu"},
    "search": {"query": "gateway"},
    "admin_reset": {"confirm": True},
    "transfer": {"to": "acc-2", "amount": 5},
    "report": {"month": "2026-11"},
}


def scopes(agent: str) -> str:
    areas = ["tools.read", "prompts.read", "resources.read"]
    if agent == ADMIN:
        areas += ["admin", "tools.write", "prompts.use", "resources.use"]
    return " ".join(f"mcp.server.{server}:{area}" for server in SERVERS for area in areas)


def version(server: str) -> str:
    # The TypeScript SDK v1 servers speak up to 2025-11-25.
    return MODERN if SERVERS[server]["kind"] == "py" else LEGACY


def visible(server: str, agent: str) -> list[str]:
    """What `agent` may see of `server`'s tools, in the server's order."""
    names = REGISTERED if agent == ADMIN else ["lookup", "search", "report"]
    if server == "vis-ts-json":
        names = names + [UNREGISTERED["name"]]
    return names


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    logs = tmp_path_factory.mktemp("visibility")
    with catalog_fleet(
        logs,
        {
            name: {"kind": spec["kind"], "sse": spec["sse"], "page_size": PAGE_SIZE, "catalog": manifest_catalog(name, spec["extra"])}
            for name, spec in SERVERS.items()
        },
    ) as running:
        yield running


def call(fleet, server: str, method: str, params=None, request_id="1", agent=READER, headers=()):
    return rpc(fleet.port, route_path(server), method, params, request_id, agent, scopes(agent), version(server), list(headers))


def pages(fleet, server: str, agent: str, method: str = "tools/list", key: str = "tools", tag: str = "p"):
    """Every page of a list, following nextCursor through the gateway: [(response, result)]."""
    found, cursor = [], None
    for n in range(10):
        params = {"cursor": cursor} if cursor is not None else {}
        response = call(fleet, server, method, params, f"{tag}-{server}-{agent}-{n}", agent)
        listed = result(response)
        found.append((response, listed))
        cursor = listed.get("nextCursor")
        if cursor is None:
            return found
    raise AssertionError(f"{server} {method}: more than 10 pages")


@pytest.mark.parametrize("server", SERVERS)
def test_two_agents_get_different_tool_lists_across_pages(gateway, server):
    fleet, servers = gateway
    before = len(servers[server].posts(server))
    for agent in (READER, ADMIN):
        listed = pages(fleet, server, agent, tag="list")
        # Pagination intact: the server's pages and cursors, whatever was hidden (a
        # page can come out empty and still lead on).
        assert [p.get("nextCursor") for _, p in listed] == ["2", "4", None], (agent, listed)
        names = [tool["name"] for _, page in listed for tool in page["tools"]]
        assert names == visible(server, agent), (agent, names)
        for response, page in listed:
            # The answer keeps the server's transport (SSE stays SSE) and nothing of
            # the tools shown is changed.
            assert content_type(response) == ("text/event-stream" if SERVERS[server]["sse"] else "application/json")
            for tool in page["tools"]:
                if tool["name"] in REGISTERED:
                    assert tool["inputSchema"] == registered_schema(server, tool["name"]), tool
            # A list filtered for this caller must never be served to another one.
            assert page["cacheScope"] == "private", (agent, page)
        if server == "vis-py-sse":
            # The server's progress notification still precedes the filtered result.
            first = messages(listed[0][0])
            assert first[0]["method"] == "notifications/progress" and "result" in first[-1], first
    # Every page was the server's own answer, not one the gateway made up.
    assert len(servers[server].posts(server)) - before == 6


def test_the_official_sdk_client_follows_the_filtered_pages(gateway):
    """The official Python SDK client takes the filtered answers (its models validate
    them) and follows nextCursor: modern against the Python server, the 2025-11-25
    handshake against the TypeScript one."""
    fleet, _ = gateway

    async def names(url: str, agent: str) -> list[str]:
        async with connect(url, mode="auto", agent=agent, scopes=scopes(agent)) as client:
            found, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor)
                found += [tool.name for tool in page.tools]
                cursor = page.next_cursor
                if cursor is None:
                    return found

    for server in ("vis-py-json", "vis-ts-sse"):
        for agent in (READER, ADMIN):
            assert anyio.run(names, fleet.url(server), agent) == visible(server, agent), (server, agent)


@pytest.mark.parametrize("server", SERVERS)
def test_a_hidden_tool_is_refused_as_before_and_a_shown_one_is_callable(gateway, server):
    """Listed exactly when callable: every tool the reader's list hides is refused with
    the gateway's usual 403 (never reaching the server), every tool it shows is
    served."""
    fleet, servers = gateway
    shown = {tool["name"] for _, page in pages(fleet, server, READER, tag="callable") for tool in page["tools"]}
    for n, tool in enumerate(REGISTERED):
        dispatched = len(servers[server].dispatches())
        # What a compliant client mirrors into Mcp-Param-* headers (2026-07-28 only).
        headers = mirrored(registered_schema(server, tool), ARGUMENTS[tool]) if version(server) == MODERN else []
        response = call(fleet, server, "tools/call", {"name": tool, "arguments": ARGUMENTS[tool]}, f"call-{server}-{n}", headers=headers)
        if tool in shown:
            assert not result(response).get("isError"), (tool, response.body)
            assert servers[server].dispatches()[dispatched:] == [{"method": "tools/call", "name": tool, "arguments": ARGUMENTS[tool]}]
            continue
        assert response.status == 403, (tool, response.status, response.body)
        missing = {"admin_reset": "admin", "transfer": "tools.write"}[tool]
        error = response.json()["error"]
        assert error["code"] == -31011 and error["message"] == f"insufficient scope: missing mcp.server.{server}:{missing}", error
        challenge = response.header("www-authenticate") or ""
        assert challenge.startswith("Bearer ") and 'error="insufficient_scope"' in challenge, challenge
        assert len(servers[server].dispatches()) == dispatched, tool
    assert shown == {"lookup", "search", "report"} | ({UNREGISTERED["name"]} if server == "vis-ts-json" else set())


@pytest.mark.parametrize("server", SERVERS)
def test_prompts_and_resources_lists_follow_what_the_caller_may_use(gateway, server):
    fleet, _ = gateway
    lists = {"prompts/list": "prompts", "resources/list": "resources", "resources/templates/list": "resourceTemplates"}
    catalog = manifest_catalog(server)
    for method, key in lists.items():
        for agent in (READER, ADMIN):
            listed = pages(fleet, server, agent, method, key, tag=f"{key}")
            entries = [entry for _, page in listed for entry in page[key]]
            # The reader may list (`*.read`) but not use (`*.use`) them: it sees none.
            assert entries == (catalog[key] if agent == ADMIN else []), (method, agent, entries)
            assert all(page["cacheScope"] == "private" for _, page in listed), (method, agent)


def test_the_audit_record_counts_hidden_entries(gateway):
    fleet, _ = gateway
    expected = {}
    for server in ("vis-py-json", "vis-ts-json", "vis-py-sse"):
        for agent in (READER, ADMIN):
            for n, (_, page) in enumerate(pages(fleet, server, agent, tag="audit")):
                expected[f"audit-{server}-{agent}-{n}"] = page
    prompts = call(fleet, "vis-py-json", "prompts/list", {}, "audit-prompts", READER)
    assert result(prompts)["prompts"] == []

    wanted = set(expected) | {"audit-prompts"}
    records = audit_records(fleet.audit_path, until=lambda rs: wanted <= {r.get("jsonrpc_id") for r in rs})
    by_id = {r["jsonrpc_id"]: r for r in records if r.get("jsonrpc_id") in wanted}
    hidden = {request_id: by_id[request_id].get("hidden_entries") for request_id in sorted(expected)}
    # Pages [lookup, search], [admin_reset, transfer], [report, debug_dump]: the reader
    # loses admin_reset and transfer; debug_dump is hidden from everyone on vis-py-json
    # and shown on vis-ts-json; vis-py-sse has no third entry on its last page.
    assert hidden == {
        "audit-vis-py-json-agent-reader-0": 0, "audit-vis-py-json-agent-reader-1": 2, "audit-vis-py-json-agent-reader-2": 1,
        "audit-vis-py-json-agent-admin-0": 0, "audit-vis-py-json-agent-admin-1": 0, "audit-vis-py-json-agent-admin-2": 1,
        "audit-vis-ts-json-agent-reader-0": 0, "audit-vis-ts-json-agent-reader-1": 2, "audit-vis-ts-json-agent-reader-2": 0,
        "audit-vis-ts-json-agent-admin-0": 0, "audit-vis-ts-json-agent-admin-1": 0, "audit-vis-ts-json-agent-admin-2": 0,
        "audit-vis-py-sse-agent-reader-0": 0, "audit-vis-py-sse-agent-reader-1": 2, "audit-vis-py-sse-agent-reader-2": 0,
        "audit-vis-py-sse-agent-admin-0": 0, "audit-vis-py-sse-agent-admin-1": 0, "audit-vis-py-sse-agent-admin-2": 0,
    }
    assert by_id["audit-prompts"].get("hidden_entries") == len(manifest_catalog("vis-py-json")["prompts"])
    assert all(by_id[i]["decision"] == "allowed" and by_id[i]["method"] == "tools/list" for i in expected)


def test_paged_lists_that_match_the_registry_raise_no_drift(gateway):
    """The servers page their lists: a page lacks the other pages' tools, which is not
    drift. Only the tool registered nowhere counts (as `extra`, once per server)."""
    fleet, _ = gateway
    for server in SERVERS:
        pages(fleet, server, ADMIN, tag="drift")
    drift = "mcp_schema_drift_total"

    def scraped():
        samples = prometheus(fleet.envoy.admin_port)
        return samples if metric(samples, drift, mcp_server="vis-ts-json", mcp_kind="extra") else None

    samples = wait_until(scraped)
    counted = {
        (dict(labels)["mcp_server"], dict(labels)["mcp_kind"]): value for (name, labels), value in samples.items() if name == drift and value
    }
    assert counted == {("vis-py-json", "extra"): 1, ("vis-ts-json", "extra"): 1}, counted
