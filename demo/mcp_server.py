"""Demo MCP server, built with the official MCP Python SDK.

Tools follow the seed documents' financial-data server manifest
(`query_transactions`, `get_account_balance`). Every HTTP request the server receives
is appended to a JSON-lines file (`--header-log`) with the MCP and gateway headers it
carried, so the demo and the tests can show exactly what reached the server; with
`--dispatch-log`, every tool the SDK dispatches is appended to another file (the name
the server acted on, to compare with the gateway's label). With `--fail-tools`, every
`tools/call` answers a result with `isError: true` (a broken release, for the demo's
canary that the watcher rolls back).

    python demo/mcp_server.py --port 8000 --header-log /tmp/seen.jsonl [--fail-tools]
"""

from __future__ import annotations

import json

import anyio

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from server_logs import serve  # noqa: E402

ACCOUNTS = {
    "acc-001": {"balance": 1520.75, "currency": "EUR"},
    "acc-002": {"balance": 98.10, "currency": "EUR"},
    # The manifest's `preflight_call` (registry/examples/financial-data.yaml): a test
    # account `mcp-registry preflight` may read as often as its load step needs.
    "ACC-TEST-0001": {"balance": 0.0, "currency": "EUR"},
}
TRANSACTIONS = {
    "acc-001": [
        {"date": "2026-11-02", "amount": -42.00, "description": "office supplies"},
        {"date": "2026-11-10", "amount": 1200.00, "description": "invoice 1043"},
    ],
    "acc-002": [{"date": "2026-11-05", "amount": -7.50, "description": "coffee"}],
}

# The registry (registry/examples/financial-data.yaml) is the source of truth for what
# agents are told: these are its registered schemas, the contract the gateway validates
# calls against and compares each tools/list answer with (schema drift). They are
# stricter than the signatures below (no extra arguments, limit and months at least 1,
# a positive amount): the gateway enforces that in `enforce` mode; the tools themselves
# still accept what their signatures accept.
SCHEMA = "https://json-schema.org/draft/2020-12/schema"
INPUT_SCHEMAS = {
    "get_account_balance": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"account_id": {"type": "string"}},
        "required": ["account_id"],
        "additionalProperties": False,
    },
    "query_transactions": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"account_id": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "default": 10}},
        "required": ["account_id"],
        "additionalProperties": False,
    },
    "transfer_funds": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {
            "from_account": {"type": "string"},
            "to_account": {"type": "string"},
            "amount": {"type": "number", "exclusiveMinimum": 0},
        },
        "required": ["from_account", "to_account", "amount"],
        "additionalProperties": False,
    },
    "export_statement": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"account_id": {"type": "string"}},
        "required": ["account_id"],
        "additionalProperties": False,
    },
    "generate_report": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"account_id": {"type": "string"}, "months": {"type": "integer", "minimum": 1, "default": 1}},
        "required": ["account_id"],
        "additionalProperties": False,
    },
}


def advertised(fn) -> Tool:
    """`fn` as a tool whose tools/list `inputSchema` is its registered schema instead of
    the one the SDK generates from the signature (titles, no `$schema`, none of the
    registered constraints), which would be counted as drift. Only the advertised
    schema changes: the SDK validates and converts a call's arguments with the model it
    built from the signature (`fn_metadata`), not with `parameters`."""
    return Tool.from_function(fn).model_copy(update={"parameters": INPUT_SCHEMAS[fn.__name__]})


def get_account_balance(account_id: str) -> dict:
    """Current balance of an account."""
    account = ACCOUNTS.get(account_id)
    if account is None:
        raise ValueError(f"unknown account {account_id}")
    return {"account_id": account_id, **account}


def query_transactions(account_id: str, limit: int = 10) -> list[dict]:
    """Recent transactions of an account."""
    return TRANSACTIONS.get(account_id, [])[:limit]


def transfer_funds(from_account: str, to_account: str, amount: float) -> str:
    """Move money between accounts (needs the tools.write scope at the gateway)."""
    return f"transferred {amount:.2f} from {from_account} to {to_account}"


async def export_statement(account_id: str, ctx: Context) -> str:
    """Slow export that reports progress (streams an SSE response)."""
    for step in range(1, 4):
        await ctx.report_progress(step, 3, f"page {step}")
        await anyio.sleep(0.3)
    return f"statement for {account_id}: {len(TRANSACTIONS.get(account_id, []))} rows"


async def generate_report(account_id: str, months: int = 1) -> str:
    """Monthly report; takes about a second per month (a slow upstream for timeouts)."""
    await anyio.sleep(months)
    return f"report for {account_id}: {months} months"


server = MCPServer(
    "financial-data",
    version="1.3.2",
    tools=[advertised(fn) for fn in (get_account_balance, query_transactions, transfer_funds, export_statement, generate_report)],
)


@server.resource("ledger://accounts", name="accounts", mime_type="application/json")
def accounts_resource() -> str:
    """The list of accounts."""
    return json.dumps(sorted(ACCOUNTS))


@server.prompt()
def summarise_account(account_id: str) -> str:
    """Prompt asking for a summary of one account."""
    return f"Summarise the recent activity of account {account_id}."


def fail_every_call(mcp_server: MCPServer) -> None:
    """Every tools/call fails: the SDK turns a ToolError into a result with
    `isError: true` (HTTP 200), the way a release with a broken backend answers."""

    async def call_tool(name, arguments, context=None):
        raise ToolError(f"{name} failed: backend unavailable (--fail-tools)")

    # The SDK's request handler looks `call_tool` up on the instance at each call.
    mcp_server.call_tool = call_tool


def main() -> None:
    serve(server, __doc__, 8000, {"--fail-tools": ("every tools/call answers isError: true", fail_every_call)})


if __name__ == "__main__":
    main()
