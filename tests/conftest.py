"""Shared fixtures: real processes on free loopback ports, stopped by PID."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MCP_CLUSTER, Authz, Ratelimit, start_echo, start_gateway, start_mcp_server  # noqa: E402
from harness import single  # noqa: E402
from harness.observe import json_lines  # noqa: E402
from harness.procs import dispatch_log  # noqa: E402


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def echo(logs):
    """Header-echo upstream: yields its port."""
    proc, port = start_echo(logs, "a")
    yield port
    proc.stop()


@pytest.fixture
def authz(logs):
    """The authz-service (release build) with the one-server gateway's rendered policy
    (harness/single.py) plus a tool with a non-ASCII name (which MCP's tool naming rules,
    and so the manifests, do not allow; the filter and the service must still carry and
    decide it safely): yields the process."""
    policy = yaml.safe_load(single.policy().read_text())
    policy["servers"]["financial-data"]["tools"]["données"] = []
    path = logs / "test-policy.yaml"
    path.write_text(yaml.safe_dump(policy, allow_unicode=True))
    service = Authz(logs, policy=path)
    yield service
    service.stop()


@pytest.fixture
def ratelimit(logs):
    """The ratelimit-service (release build, in memory) with the one-server gateway's
    rendered limits (harness/single.py)."""
    service = Ratelimit(logs)
    yield service
    service.stop()


@pytest.fixture
def echo_gateway(logs, echo, authz, ratelimit):
    """The one-server gateway (harness/single.py: the whole chain, rendered) with the echo upstream as the MCP server:
    yields the listener port."""
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **authz.upstreams(), **ratelimit.upstreams()})
    yield port
    envoy.stop()


class SeenLog:
    """What the demo MCP server recorded about each request it received."""

    def __init__(self, path: Path):
        self.path = path

    def records(self) -> list[dict]:
        return json_lines(self.path)

    def dispatches(self) -> list[str]:
        """Names of the tools the server's SDK dispatched, in order."""
        path = dispatch_log(self.path)
        return [record["name"] for record in json_lines(path)]

    def posts(self) -> list[dict[str, str]]:
        """Headers of each POST, as a dict (last copy wins; copies checked elsewhere)."""
        return [dict(r["headers"]) for r in self.records() if r["method"] == "POST"]


@pytest.fixture
def mcp_server(logs):
    """Demo MCP server (official SDK): yields (port, SeenLog)."""
    seen = SeenLog(logs / "seen.jsonl")
    proc, port = start_mcp_server(logs, seen.path)
    yield port, seen
    proc.stop()


@pytest.fixture
def mcp_gateway(logs, mcp_server, authz, ratelimit):
    """The one-server gateway (harness/single.py: the whole chain, rendered) in front of the demo MCP server:
    yields (url, SeenLog)."""
    port, seen = mcp_server
    envoy, listener = start_gateway(
        logs, {MCP_CLUSTER: port, **authz.upstreams(), **ratelimit.upstreams()}
    )
    yield f"http://127.0.0.1:{listener}/mcp", seen
    envoy.stop()
