"""A synthetic fleet for the scale benchmark (tests/bench/fleet_scale.py): N server
manifests in the registry's format (notes in registry/, examples in registry/examples/),
20 tools each, every gateway section filled the way a real fleet fills it.

Each server gets what the example fleet's servers use, so render, Envoy, the policy
and the limits carry a realistic amount per server: 20 tools (the same 20 names and
schema files for every server: the schemas are validated per tool reference either
way), one tool with an extra write scope, a default per-agent limit, one per-agent
override and one per-tool limit (all far above what the benchmark sends), an upstream
credential file of its own, timeouts and a metric label. Every endpoint is one
loopback port (the benchmark's fast upstream), as `Fleet` does for its servers.

    .venv/bin/python tests/bench/fleet_manifests.py N OUT_DIR [--port 8000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TOOLS_PER_SERVER = 20
# Verbs and nouns of real tool names, so names have real lengths (10-25 characters).
_VERBS = ("get", "list", "search", "create", "update")
_NOUNS = ("customer_record", "invoice", "support_ticket", "shipment")
TOOLS = tuple(f"{verb}_{noun}" for noun in _NOUNS for verb in _VERBS)
assert len(TOOLS) == TOOLS_PER_SERVER
# The tool every benchmark request calls: read scope only, no limit of its own.
CALLED_TOOL = TOOLS[0]
WRITE_TOOL = TOOLS[3]  # create_customer_record: needs an extra scope
LIMITED_TOOL = TOOLS[2]  # search_customer_record: a per-tool limit
# Limits no benchmark reaches (u32 requests per unit), so every request is answered 200.
HIGH_LIMIT = "{unit: minute, requests_per_unit: 100000000}"


def server_id(index: int) -> str:
    """srv-00000, srv-00001, ...: sorted like their index (render sorts by id, so the
    route of server i is the (i+1)-th server route)."""
    return f"srv-{index:05d}"


def schema(tool: str) -> dict:
    """A small JSON Schema of the kind real tools have: an id, a few optional filters."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": tool,
        "type": "object",
        "properties": {
            "customer_id": {"type": "string", "pattern": "^cus_[a-z0-9]{8,32}$"},
            "since": {"type": "string", "format": "date"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            "fields": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        },
        "required": ["customer_id"],
        "additionalProperties": False,
    }


def manifest(index: int, port: int) -> str:
    sid = server_id(index)
    tools = "".join(f"  - name: {tool}\n    schema_ref: schemas/{tool}_v1.json\n" for tool in TOOLS)
    team = f"team-{index % 250:03d}"
    return (
        f"# Synthetic fleet member (tests/bench/fleet_manifests.py).\n"
        f"server_id: {sid}\n"
        f'version: "1.{index % 7}.{index % 13}"\n'
        f"transport: streamable_http\n"
        f"endpoint: http://127.0.0.1:{port}/mcp\n"
        f"tools:\n{tools}"
        f"owner: {team}@company.com\n"
        f"sla_tier: tier-{1 + index % 3}\n"
        f"auth_required: true\n"
        f"auth_scheme: oauth2\n"
        f"on_call_runbook: https://wiki.internal/runbooks/mcp-{sid}\n"
        f"\n"
        f"gateway:\n"
        f"  scopes:\n"
        f"    tools:\n"
        f"      {WRITE_TOOL}: [mcp.server.{sid}:tools.write]\n"
        f"  rate_limits:\n"
        f"    default: {HIGH_LIMIT}\n"
        f"    agents: {{agent-batch-{index % 10}: {HIGH_LIMIT}}}\n"
        f"    tools: {{{LIMITED_TOOL}: {HIGH_LIMIT}}}\n"
        f"  upstream_credential: {{file: credentials/{sid}}}\n"
        f"  timeouts: {{request: 30s, idle: 300s}}\n"
        f"  metric_labels: {{team: {team}}}\n"
    )


def write_shared(directory: Path) -> None:
    """The schema files every manifest points at."""
    schemas = directory / "schemas"
    schemas.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        (schemas / f"{tool}_v1.json").write_text(json.dumps(schema(tool), indent=1) + "\n")
    (directory / "credentials").mkdir(exist_ok=True)


def write_server(directory: Path, index: int, port: int) -> Path:
    """One server's manifest and its credential file; returns the manifest path."""
    sid = server_id(index)
    # A demo value, not a secret.
    (directory / "credentials" / sid).write_text(f"Bearer synthetic-upstream-credential-{sid}\n")
    path = directory / f"{sid}.yaml"
    path.write_text(manifest(index, port))
    return path


def generate(directory: Path, count: int, port: int) -> None:
    """`count` manifests (servers 0 .. count-1) in `directory`, which is created."""
    directory = Path(directory)
    write_shared(directory)
    for index in range(count):
        write_server(directory, index, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--port", type=int, default=8000, help="the endpoint port of every server")
    args = parser.parse_args()
    generate(args.out, args.count, args.port)
    print(f"{args.count} manifests in {args.out}")


if __name__ == "__main__":
    main()
