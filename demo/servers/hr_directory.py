"""The example fleet's hr-directory server (registry/examples/hr-directory.yaml), built
with the official MCP Python SDK like demo/mcp_server.py, as a second Python team's server.

Tools and their parameters follow the registered schemas (registry/examples/schemas/
find_employee_v1.json, get_org_chart_v1.json, list_open_roles_v1.json), and tools/list
advertises exactly those schemas (INPUT_SCHEMAS), so the gateway sees no schema drift;
the data is a small fake directory. As in demo/mcp_server.py, every HTTP request is
appended to a JSON-lines file (`--header-log`) with the MCP and gateway headers it
carried, and with `--dispatch-log` every tool the SDK dispatches is appended to another
file.

    python demo/servers/hr_directory.py --port 8001 --header-log /tmp/seen.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

# demo/server_logs.py, shared by the demo servers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server_logs import serve  # noqa: E402

EMPLOYEES = {
    "e-100": {"name": "Ada Moreau", "title": "Chief People Officer", "department": "people", "manager": None},
    "e-110": {"name": "Bruno Keller", "title": "Head of Engineering", "department": "engineering", "manager": "e-100"},
    "e-111": {"name": "Chiara Rossi", "title": "Backend Engineer", "department": "engineering", "manager": "e-110"},
    "e-112": {"name": "Dmitri Ivanov", "title": "Site Reliability Engineer", "department": "engineering", "manager": "e-110"},
    "e-120": {"name": "Elif Demir", "title": "Finance Lead", "department": "finance", "manager": "e-100"},
    "e-121": {"name": "Femi Adeyemi", "title": "Accountant", "department": "finance", "manager": "e-120"},
}
OPEN_ROLES = [
    {"id": "r-7", "title": "Platform Engineer", "department": "engineering", "location": "Berlin"},
    {"id": "r-9", "title": "Data Engineer", "department": "engineering", "location": "remote"},
    {"id": "r-12", "title": "Payroll Specialist", "department": "finance", "location": "Lisbon"},
]

# The registered schemas (the registry is the source of truth for what agents are told),
# advertised as they are: the gateway compares each tools/list answer with them (schema
# drift) and validates calls against them. Where they say less than the signatures
# below (no `default` for depth or department: the tool picks it) or more (no extra
# arguments), the registry's word is what agents see.
SCHEMA = "https://json-schema.org/draft/2020-12/schema"
INPUT_SCHEMAS = {
    "find_employee": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"query": {"type": "string", "minLength": 1}},
        "required": ["query"],
        "additionalProperties": False,
    },
    "get_org_chart": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"employee_id": {"type": "string"}, "depth": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["employee_id"],
        "additionalProperties": False,
    },
    "list_open_roles": {
        "$schema": SCHEMA,
        "type": "object",
        "properties": {"department": {"type": "string"}},
        "required": [],
        "additionalProperties": False,
    },
}


def advertised(fn) -> Tool:
    """`fn` as a tool whose tools/list `inputSchema` is its registered schema instead of
    the one the SDK generates from the signature (titles, defaults, no `$schema`), which
    would be counted as drift. Only the advertised schema changes: the SDK validates and
    converts a call's arguments with the model it built from the signature
    (`fn_metadata`), not with `parameters`."""
    return Tool.from_function(fn).model_copy(update={"parameters": INPUT_SCHEMAS[fn.__name__]})



def _card(employee_id: str) -> dict:
    employee = EMPLOYEES[employee_id]
    return {"employee_id": employee_id, "name": employee["name"], "title": employee["title"], "department": employee["department"]}


def find_employee(query: Annotated[str, Field(min_length=1)]) -> list[dict]:
    """Employees whose name, title or id contains the query (case-insensitive)."""
    needle = query.lower()
    return [
        _card(employee_id)
        for employee_id, employee in EMPLOYEES.items()
        if needle in employee_id or needle in employee["name"].lower() or needle in employee["title"].lower()
    ]


def get_org_chart(employee_id: str, depth: Annotated[int, Field(ge=1, le=5)] = 2) -> dict:
    """An employee, their manager, and their reports down to `depth` levels."""
    if employee_id not in EMPLOYEES:
        raise ValueError(f"unknown employee {employee_id}")

    def reports(manager_id: str, levels: int) -> list[dict]:
        if levels == 0:
            return []
        return [
            {**_card(report_id), "reports": reports(report_id, levels - 1)}
            for report_id, employee in EMPLOYEES.items()
            if employee["manager"] == manager_id
        ]

    manager = EMPLOYEES[employee_id]["manager"]
    return {
        **_card(employee_id),
        "manager": _card(manager) if manager else None,
        "reports": reports(employee_id, depth),
    }


# `department` is optional but, in the registered schema, a plain string (no null): an
# empty default means "every department".
def list_open_roles(department: str = "") -> list[dict]:
    """Open positions, in one department or (without `department`) in all of them."""
    return [role for role in OPEN_ROLES if not department or role["department"] == department.lower()]


server = MCPServer(
    "hr-directory", version="0.4.0", tools=[advertised(fn) for fn in (find_employee, get_org_chart, list_open_roles)]
)


def main() -> None:
    serve(server, __doc__, 8001)


if __name__ == "__main__":
    main()
