"""Tool names the limits do not know cannot switch rate limiting off, through real Envoy,
the authz-service, the ratelimit-service (memory and Redis) and an upstream.

The tool name reaches the ratelimit-service as the value of a key-only descriptor
(`tool_call` without `value:`), so a client chooses it. These tests run with a policy
that lets unknown tools through (`unknown_tool: allow`; the demo policy refuses them
before rate limiting) and one agent sends many made-up tool names:

- with `max_distinct_values`, names past the bound share one overflow counter: the
  flooding agent is limited after its limit's worth of calls, and another agent keeps
  its own counter and its own budget;
- with a small memory store (`--memory-capacity`), a full store no longer answers
  UNAVAILABLE (which Envoy's default `failure_mode_deny: false` turned into "every
  client unlimited"): existing counters keep their limits, new ones share the limit's
  overflow counter, and Envoy never falls back to its failure mode.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from harness import MCP_CLUSTER, Authz, Ratelimit, RedisServer, bearer, envoy_counter, metric, request, start_gateway
from harness import single
from harness.single import limits_config

from e2e.helpers import modern_call

LIMIT = 5
ATTACKER = "agent-flooding"
VICTIM = "agent-bystander"


def bounded_ratelimit(logs: Path, limits: dict, memory_capacity: int | None = None, redis_url: str | None = None):
    """mcp-ratelimit-service with our limits and, optionally, a memory capacity or Redis."""
    config = Path(logs) / "bounded-limits.yaml"
    config.write_text(yaml.safe_dump(limits))
    extra = ["--memory-capacity", str(memory_capacity)] if memory_capacity is not None else []
    return Ratelimit(logs, config=config, redis_url=redis_url, extra_args=extra)


def limits(max_distinct_values: int | None = None) -> dict:
    """Any tool, any agent (both key-only): LIMIT calls per minute per pair."""
    config = limits_config([{
        "key": "tool_call",
        "descriptors": [{"key": "agent_id", "rate_limit": {"unit": "minute", "requests_per_unit": LIMIT}}],
    }])
    if max_distinct_values is not None:
        config["max_distinct_values"] = max_distinct_values
    return config


@pytest.fixture
def open_authz(logs):
    """The authz-service with the one-server policy, but unknown tools allowed."""
    policy = yaml.safe_load(single.policy().read_text())
    policy["unknown_tool"] = "allow"
    path = logs / "open-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    service = Authz(logs, policy=path)
    yield service
    service.stop()


def call(port: int, tool: str, agent: str, request_id: int = 1) -> int:
    body, headers = modern_call(tool, request_id=request_id, auth=False)
    return request(port, "POST", "/mcp", body, headers + [bearer(agent)]).status


# Every test here may wait for a fresh minute window (up to 25 s).
pytestmark = pytest.mark.slow


def wait_for_fresh_minute(needed_seconds: float = 25) -> None:
    """Counters are per fixed minute: start early enough in one that the test ends in it."""
    if time.time() % 60 > 60 - needed_seconds:
        time.sleep(60 - time.time() % 60 + 0.1)


def ratelimit_stats(envoy) -> dict[str, int]:
    """Envoy's own view of its rate limit calls on the MCP route's cluster."""
    names = ("ok", "over_limit", "error", "failure_mode_allowed")
    return {name: envoy_counter(envoy.admin_port, f"cluster.{MCP_CLUSTER}.ratelimit.{name}") for name in names}


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_made_up_tool_names_past_the_bound_share_one_limited_counter(logs, echo, open_authz, store):
    redis = RedisServer(logs) if store == "redis" else None
    ratelimit = bounded_ratelimit(logs, limits(max_distinct_values=20), redis_url=redis and redis.url)
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **open_authz.upstreams(), **ratelimit.upstreams()})
    try:
        wait_for_fresh_minute()
        statuses = [call(port, f"made-up-{i}", ATTACKER, request_id=i) for i in range(60)]
        # 20 names with a counter each (1 call each), then one shared counter: LIMIT
        # more calls, and every other one refused.
        assert statuses == [200] * (20 + LIMIT) + [429] * (60 - 20 - LIMIT)
        # Another agent's calls: its tool name comes after the bound too, but its agent
        # value keeps a counter of its own: its own LIMIT, none of the flood's hits.
        assert [call(port, "query_transactions", VICTIM, request_id=100 + i) for i in range(LIMIT + 1)] == (
            [200] * LIMIT + [429]
        )
        stats = ratelimit_stats(envoy)
        assert stats["error"] == 0 and stats["failure_mode_allowed"] == 0, stats
        assert stats["over_limit"] == 60 - 20 - LIMIT + 1, stats
        overflowed = 60 - 20 + LIMIT + 1
        overflow = metric(ratelimit.metrics(), "mcp_ratelimit_overflow_total", key="server_id.tool_call.agent_id", reason="max_distinct_values")
        assert overflow == overflowed
    finally:
        envoy.stop()
        ratelimit.stop()
        if redis:
            redis.stop()


def test_a_full_memory_store_does_not_let_everyone_through(logs, echo, open_authz):
    # Room for 40 entries: a counter and the two values it needs are three.
    ratelimit = bounded_ratelimit(logs, limits(), memory_capacity=40)
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **open_authz.upstreams(), **ratelimit.upstreams()})
    try:
        wait_for_fresh_minute()
        assert call(port, "query_transactions", VICTIM) == 200
        statuses = [call(port, f"made-up-{i}", ATTACKER, request_id=i) for i in range(120)]
        assert set(statuses) <= {200, 429}, statuses
        # 12 names fill the store (with the victim's counter); then the limit's
        # overflow counter: LIMIT more calls pass, the rest are refused.
        assert statuses.count(200) == 12 + LIMIT, statuses
        # The service never failed, so Envoy never fell back to failing open.
        stats = ratelimit_stats(envoy)
        assert stats["error"] == 0 and stats["failure_mode_allowed"] == 0, stats
        # The victim's counter existed before the store filled: it keeps its limit.
        assert [call(port, "query_transactions", VICTIM, request_id=200 + i) for i in range(LIMIT)] == (
            [200] * (LIMIT - 1) + [429]
        )
        # An agent with no counter yet shares the overflow counter while the store is
        # full: limited together with the flood (already over), not let through.
        assert call(port, "query_transactions", "agent-newcomer") == 429
        metrics = ratelimit.metrics()
        assert metric(metrics, "mcp_ratelimit_overflow_total", key="server_id.tool_call.agent_id", reason="store_full") > 0
        assert ("mcp_ratelimit_backend_errors_total", frozenset()) in metrics
        assert metric(metrics, "mcp_ratelimit_backend_errors_total") == 0
    finally:
        envoy.stop()
        ratelimit.stop()
