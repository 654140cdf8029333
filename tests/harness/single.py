"""The gateway of one server that most end-to-end tests run: the example financial-data
manifest (its tools, schemas, version and scopes as registered) exposed at /mcp,
rendered by `mcp-registry render` into the standalone Envoy config, the policy and the
limits the harness starts Envoy and the services on. Nothing of it is written by hand:
the tests run what render writes for any fleet.

Its gateway section is the tests' own: no upstream credential (the tests check what
reaches the server, and that the client's token does not), and the seed documents'
limit only (agent-prod-001: 120 calls per minute of each tool; every other agent is
unlimited, so tests that make many calls never meet a 429 they did not ask for)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml

from .registry import EXAMPLES, manifest_text, render

SERVER_ID = "financial-data"
PATH = "/mcp"
# The cluster render names after the server (registry/src/render/envoy.rs).
MCP_CLUSTER = f"mcp-server/{SERVER_ID}"
LIMITED_AGENT = "agent-prod-001"
LIMIT_PER_MINUTE = 120


def manifest() -> str:
    example = yaml.safe_load(manifest_text(SERVER_ID, 8000, path=PATH))
    gateway = example["gateway"]
    gateway.pop("upstream_credential", None)
    gateway["rate_limits"] = {"agents": {LIMITED_AGENT: {"unit": "minute", "requests_per_unit": LIMIT_PER_MINUTE}}}
    return yaml.safe_dump(example, sort_keys=False)


@lru_cache(maxsize=1)
def rendered() -> Path:
    """The rendered directory, once per test process (files are only read from it:
    the services and Envoy get private copies)."""
    work = Path(tempfile.mkdtemp(prefix="mcp-single-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    manifests = work / "manifests"
    manifests.mkdir()
    shutil.copytree(EXAMPLES / "schemas", manifests / "schemas")
    (manifests / f"{SERVER_ID}.yaml").write_text(manifest())
    render(manifests, work / "rendered", work / "credentials")
    return work / "rendered"


def standalone() -> Path:
    return rendered() / "envoy" / "standalone.yaml"


def policy() -> Path:
    return rendered() / "policy.yaml"


def schemas() -> Path:
    """The tool schemas the authz-service validates `tools/call` arguments with (the
    manifest's validation mode is the default, `report`)."""
    return rendered() / "schemas.json"


def limits() -> Path:
    return rendered() / "limits" / "limits.yaml"


def limits_config(descriptors: list[dict]) -> dict:
    """A ratelimit-service config for this gateway with the tests' own `tool_call`
    descriptors: under the server's level, as rendered limits are (the route sends
    [server_id, tool_call, agent_id])."""
    return {
        "domain": "mcp_gateway",
        "descriptors": [{"key": "server_id", "value": SERVER_ID, "descriptors": descriptors}],
    }
