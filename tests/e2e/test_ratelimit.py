"""Global per-agent, per-tool rate limits through real Envoy: the seed's 120 calls per
minute for agent-prod-001, shared across Envoys and (through Redis) across replicas."""

from __future__ import annotations

import time

import pytest
from harness import MCP_CLUSTER, Authz, Ratelimit, RedisServer, bearer, metric, request, start_gateway

from e2e.helpers import modern_call, ratelimit_failure_mode_deny

LIMITED = "agent-prod-001"
LIMIT = 120


def wait_for_fresh_minute(needed_seconds: float = 15) -> None:
    """Counters are per fixed minute: start a run early in a minute, so that it does
    not straddle a window boundary."""
    if time.time() % 60 > 60 - needed_seconds:
        time.sleep(60 - time.time() % 60 + 0.1)


def call(port: int, tool: str = "query_transactions", agent: str = LIMITED, request_id=1):
    body, headers = modern_call(tool, request_id=request_id, auth=False)
    return request(port, "POST", "/mcp", body, headers + [bearer(agent)])


@pytest.fixture
def chain(logs, echo, authz, ratelimit):
    def start(extra=None, mutate=None):
        return start_gateway(
            logs, {MCP_CLUSTER: echo, **authz.upstreams(), **ratelimit.upstreams(), **(extra or {})}, mutate=mutate
        )

    return start


# Slow: may wait for a fresh minute window (up to 15 s).
@pytest.mark.slow
def test_121st_call_is_429_with_retry_after_and_json_rpc_error(chain, ratelimit):
    envoy, port = chain()
    try:
        wait_for_fresh_minute()
        for i in range(LIMIT):
            response = call(port, request_id=i)
            assert response.status == 200, (i, response.body)
        assert response.header("x-ratelimit-remaining") == "0"
        response = call(port, request_id="r-121")
        assert response.status == 429
        retry_after = int(response.header("retry-after"))
        assert 1 <= retry_after <= 60
        assert response.header("content-type") == "application/json"
        # The filter gives Envoy's 429 a JSON-RPC body with the request's own id.
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": "r-121",
            "error": {
                "code": -31020,
                "message": "rate limited: too many calls of this tool by this agent; "
                f"retry after {retry_after} seconds",
            },
        }
        # Another tool of the same agent, and the same tool of another agent, still pass.
        assert call(port, tool="get_account_balance").status == 200
        assert call(port, agent="agent-prod-002").status == 200
        metrics = ratelimit.metrics()
        assert metric(metrics, "mcp_ratelimit_over_limit_total", key="server_id.tool_call.agent_id") == 1
        assert metric(metrics, "mcp_ratelimit_hits_total", key="server_id.tool_call.agent_id") == 122
    finally:
        envoy.stop()


# Slow: may wait for a fresh minute window (up to 15 s).
@pytest.mark.slow
def test_two_envoys_share_the_limit(chain):
    first, first_port = chain()
    second, second_port = chain()
    try:
        wait_for_fresh_minute()
        for i in range(LIMIT):
            port = first_port if i % 2 else second_port
            assert call(port, request_id=i).status == 200, i
        assert call(first_port).status == 429
        assert call(second_port).status == 429
    finally:
        first.stop()
        second.stop()


def test_service_down_fails_open_by_default_and_closed_when_asked(chain, ratelimit):
    open_envoy, open_port = chain()
    closed_envoy, closed_port = chain(mutate=ratelimit_failure_mode_deny)
    try:
        assert call(open_port).status == 200
        assert call(closed_port).status == 200
        ratelimit.stop()
        assert call(open_port).status == 200, "fail open: the default"
        refused = call(closed_port)
        assert refused.status >= 400 and refused.status != 429, refused.status
    finally:
        open_envoy.stop()
        closed_envoy.stop()


# Slow: may wait for a fresh minute window (up to 15 s).
@pytest.mark.slow
def test_replicas_share_counters_through_redis(logs, echo):
    redis = RedisServer(logs)
    authz = Authz(logs)
    replicas = [Ratelimit(logs, redis_url=redis.url) for _ in range(2)]
    envoys = [
        start_gateway(logs, {MCP_CLUSTER: echo, **authz.upstreams(), **replica.upstreams()})
        for replica in replicas
    ]
    try:
        wait_for_fresh_minute()
        for i in range(LIMIT):
            _, port = envoys[i % 2]
            assert call(port, request_id=i).status == 200, i
        for _, port in envoys:
            response = call(port)
            assert response.status == 429
            assert response.header("retry-after")
    finally:
        for envoy, _ in envoys:
            envoy.stop()
        for process in (*replicas, authz, redis):
            process.stop()
