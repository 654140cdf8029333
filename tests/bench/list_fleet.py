"""The fleet of the per-caller list and argument validation benchmark
(tests/bench/bench_lists.py): two servers whose manifests register 10 and 500 tools,
each tool with a realistic input schema of about 300 bytes, rendered by the real
`mcp-registry render`.

The same module gives the benchmark's upstream (fast_upstream.py) the tools it
advertises, with exactly the registered schemas, so the filter's drift check runs in
full (every advertised inputSchema digested and compared) and finds no drift.

Half of every server's tools need a write scope the benchmark token lacks, so a
filtered `tools/list` really hides entries: the token may call the even-numbered
tools. The tools the benchmark calls are allowed:
  - `get_record_0000`: a small call (`{"account_id": "acc-001"}`);
  - `import_records` (tool 0002 of the 10-tool server): a 16 KiB call made of the
    `field_NNNN` objects of bench_envoy.arguments(), which its schema admits through
    `patternProperties` (each object typed, required fields, nothing else).
"""

from __future__ import annotations

import json
from pathlib import Path

# server id -> number of tools (its path is /<id>/mcp, its endpoint /tools-<N>).
SERVERS = {"bench-tools-10": 10, "bench-tools-500": 500}
SMALL_TOOL = "get_record_0000"
BULK_TOOL = "import_records"
WRITE_SCOPE = "tools.write"
_VERBS = ("get", "list", "search", "create", "update", "delete", "export", "sync")
_NOUNS = ("record", "invoice", "ticket", "shipment", "customer", "order", "refund", "payout")


def tool_names(count: int) -> list[str]:
    """`count` distinct tool names of real lengths: get_record_0000, list_invoice_0001..."""
    names = [f"{_VERBS[i % 8]}_{_NOUNS[(i // 8) % 8]}_{i:04d}" for i in range(count)]
    names[0] = SMALL_TOOL
    if count > 2:
        names[2] = BULK_TOOL
    return names


def needs_write(index: int) -> bool:
    """The odd-numbered tools need the write scope: the benchmark token may not call them."""
    return index % 2 == 1


def tool_schema(name: str) -> dict:
    """The registered (and advertised) input schema of a tool: about 300 bytes of
    compact JSON, the shape SDKs emit (typed properties, a pattern, bounds, an enum,
    required fields, no extra properties)."""
    if name == BULK_TOOL:
        return {
            "type": "object",
            "properties": {"account_id": {"type": "string", "pattern": "^acc-[0-9]{3,12}$"}},
            "patternProperties": {
                "^field_[0-9]{4}$": {
                    "type": "object",
                    "properties": {
                        "note": {"type": "string", "maxLength": 200},
                        "amount": {"type": "integer", "minimum": 0},
                        "ok": {"type": "boolean"},
                    },
                    "required": ["note", "amount", "ok"],
                    "additionalProperties": False,
                }
            },
            "required": ["account_id"],
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "properties": {
            "account_id": {"type": "string", "pattern": "^acc-[0-9]{3,12}$", "description": "The account."},
            "since": {"type": "string", "format": "date"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            "status": {"type": "string", "enum": ["open", "closed", "pending"]},
        },
        "required": ["account_id"],
        "additionalProperties": False,
    }


def advertised_tools(count: int) -> list[dict]:
    """What the server of `count` tools answers to tools/list: every registered tool
    with its registered schema (so no drift)."""
    return [
        {
            "name": name,
            "description": f"Reads or changes {name.split('_')[1]} entries of the account ({name}).",
            "inputSchema": tool_schema(name),
        }
        for name in tool_names(count)
    ]


def manifest(server_id: str, count: int, port: int, validation: str) -> str:
    tools = "".join(f"  - name: {name}\n    schema_ref: schemas/{name}.json\n" for name in tool_names(count))
    scoped = "".join(
        f"      {name}: [mcp.server.{server_id}:{WRITE_SCOPE}]\n"
        for index, name in enumerate(tool_names(count))
        if needs_write(index)
    )
    return (
        f"# The list and validation benchmark's fleet (tests/bench/list_fleet.py).\n"
        f"server_id: {server_id}\n"
        f'version: "1.0.0"\n'
        f"transport: streamable_http\n"
        f"endpoint: http://127.0.0.1:{port}/tools-{count}\n"
        f"tools:\n{tools}"
        f"owner: platform-team@company.com\n"
        f"sla_tier: tier-1\n"
        f"auth_required: true\n"
        f"auth_scheme: oauth2\n"
        f"on_call_runbook: https://wiki.internal/runbooks/{server_id}\n"
        f"\n"
        f"gateway:\n"
        f"  path: /{server_id}/mcp\n"
        f"  validation: {validation}\n"
        f"  scopes:\n"
        f"    tools:\n{scoped}"
        f"  rate_limits:\n"
        f"    default: {{unit: minute, requests_per_unit: 100000000}}\n"
    )


def generate(directory: Path, port: int, validation: str) -> None:
    """The manifests and schema files of the fleet in `directory` (created)."""
    directory = Path(directory)
    schemas = directory / "schemas"
    schemas.mkdir(parents=True, exist_ok=True)
    for server_id, count in SERVERS.items():
        for name in tool_names(count):
            (schemas / f"{name}.json").write_text(json.dumps(tool_schema(name), indent=1) + "\n")
        (directory / f"{server_id}.yaml").write_text(manifest(server_id, count, port, validation))


def scopes(server_ids=SERVERS) -> str:
    """The benchmark token's scopes: read on every server, never write."""
    return " ".join(f"mcp.server.{sid}:{area}.read" for sid in server_ids for area in ("tools", "resources", "prompts"))
