"""Failure injection through real Envoy, the real services, Redis and the SDK server:
each dependency down or slow, and what the client, the audit log and the metrics say.

"Slow" is a process frozen with SIGSTOP: its sockets stay open and the kernel still
accepts connections, but nothing answers, as with a stuck or overloaded service.
"""

from __future__ import annotations

import json
import socket
import time

import jwt
import pytest
import yaml
from harness import (
    MCP_CLUSTER,
    ROOT, Authz, Process, Ratelimit, RedisServer, audit_records, bearer, envoy_counter, free_port, metric, python,
    request, start_gateway, wait_until,
)
from harness.single import limits_config
from harness.authz import ISSUER, READ_SCOPES, RESOURCE, jwks, signing_key

from e2e.helpers import AGENT, modern_call, ratelimit_failure_mode_deny, route_timeout

HERE = ROOT / "tests" / "harness"


def call(port: int, tool: str = "get_account_balance", agent: str = AGENT, request_id=7, **claims):
    body, headers = modern_call(tool, request_id=request_id, arguments={"account_id": "acc-001"}, auth=False)
    return request(port, "POST", "/mcp", body, headers + [bearer(agent, **claims)])


def error_code(response) -> int:
    return json.loads(response.body)["error"]["code"]


def wait_listening(port: int, process: Process, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def faulty_upstream(logs, mode: str) -> tuple[Process, int]:
    port = free_port()
    process = Process(f"faulty-{mode}-{port}", [python(), str(HERE / "faulty_upstream.py"), str(port), mode], logs)
    wait_listening(port, process)
    return process, port


def record_for(envoy, request_id: int) -> dict:
    records = audit_records(envoy.audit_path, until=lambda rs: any(r["jsonrpc_id"] == request_id for r in rs))
    matching = [r for r in records if r["jsonrpc_id"] == request_id]
    assert len(matching) == 1, records
    return matching[0]


@pytest.fixture
def stack(logs, mcp_server):
    """The whole chain in front of the SDK server; yields (envoy, port, authz, ratelimit, seen)."""
    server_port, seen = mcp_server
    authz, ratelimit = Authz(logs), Ratelimit(logs)
    envoy, port = start_gateway(logs, {MCP_CLUSTER: server_port, **authz.upstreams(), **ratelimit.upstreams()})
    try:
        yield envoy, port, authz, ratelimit, seen
    finally:
        for process in (envoy, ratelimit, authz):
            process.stop()


def test_authz_service_slow_is_refused_with_a_clear_error_then_recovers(stack):
    envoy, port, authz, _, seen = stack
    assert call(port, request_id=1).status == 200
    posts = len(seen.posts())
    authz.freeze()
    try:
        refused = call(port, request_id=2)
    finally:
        authz.thaw()
    # ext_authz gives up after its 1 s timeout and fails closed.
    assert refused.status == 503, refused.body
    assert error_code(refused) == -31012
    assert json.loads(refused.body)["id"] == 2
    assert len(seen.posts()) == posts, "a call went through unchecked"
    record = record_for(envoy, 2)
    assert (record["decision"], record["http_status"], record["error_code"]) == ("denied", 503, -31012)
    assert call(port, request_id=3).status == 200


@pytest.mark.parametrize("fault", ["down", "slow"])
def test_ratelimit_service_failing_follows_the_failure_mode_and_is_counted(logs, mcp_server, fault):
    server_port, seen = mcp_server
    authz, ratelimit = Authz(logs), Ratelimit(logs)
    upstreams = {MCP_CLUSTER: server_port, **authz.upstreams(), **ratelimit.upstreams()}
    fail_open, open_port = start_gateway(logs, upstreams)
    fail_closed, closed_port = start_gateway(logs, upstreams, mutate=ratelimit_failure_mode_deny)
    try:
        assert call(open_port, request_id=1).status == 200
        assert call(closed_port, request_id=1).status == 200
        ratelimit.freeze() if fault == "slow" else ratelimit.stop()
        allowed = call(open_port, request_id=2)
        assert allowed.status == 200, allowed.body
        assert json.loads(allowed.body)["result"]["isError"] is False
        refused = call(closed_port, request_id=2)
        assert refused.status == 500, refused.body
        # Envoy counts every failed rate limit call on the route's cluster.
        assert envoy_counter(fail_open.admin_port, f"cluster.{MCP_CLUSTER}.ratelimit.error") >= 1
        assert envoy_counter(fail_open.admin_port, f"cluster.{MCP_CLUSTER}.ratelimit.failure_mode_allowed") >= 1
        assert envoy_counter(fail_closed.admin_port, f"cluster.{MCP_CLUSTER}.ratelimit.error") >= 1
        assert record_for(fail_open, 2)["decision"] == "allowed"
        assert record_for(fail_closed, 2)["http_status"] == 500
    finally:
        for process in (fail_open, fail_closed, ratelimit, authz):
            process.stop()


def test_redis_down_fails_open_and_counting_resumes_when_it_is_back(logs, echo):
    limits = logs / "limits.yaml"
    limits.write_text(yaml.safe_dump(limits_config([{
        "key": "tool_call", "descriptors": [{"key": "agent_id", "rate_limit": {"unit": "hour", "requests_per_unit": 2}}],
    }])))
    redis = RedisServer(logs)
    authz = Authz(logs)
    ratelimit = Ratelimit(logs, config=limits, redis_url=redis.url)
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **authz.upstreams(), **ratelimit.upstreams()})
    try:
        assert call(port, request_id=1).status == 200
        redis.stop()
        # The service cannot count: Envoy lets the call through (fail open) and
        # both sides count the failure.
        for n in range(2, 6):
            assert call(port, request_id=n).status == 200
        assert envoy_counter(envoy.admin_port, f"cluster.{MCP_CLUSTER}.ratelimit.failure_mode_allowed") >= 4
        assert metric(ratelimit.metrics(), "mcp_ratelimit_backend_errors_total") >= 4
        redis = RedisServer(logs, port=redis.port)  # back, empty (no persistence)
        deadline = time.monotonic() + 20
        statuses = []
        while time.monotonic() < deadline:
            statuses.append(call(port, request_id=100 + len(statuses)).status)
            if statuses[-1] == 429:
                break
            time.sleep(0.2)
        # Redis reconnected: two calls counted, the third over the limit.
        assert statuses[-1] == 429, statuses
        assert statuses[-3:-1] == [200, 200], statuses
    finally:
        for process in (envoy, ratelimit, authz, redis):
            process.stop()


def test_jwks_endpoint_down_keeps_the_cached_keys(logs, echo, ratelimit):
    keys_dir = logs / "idp"
    keys_dir.mkdir()
    (keys_dir / "jwks.json").write_text(json.dumps(jwks()))
    idp_port = free_port()
    idp = Process(f"idp-{idp_port}", [python(), "-m", "http.server", str(idp_port), "--bind", "127.0.0.1", "--directory", str(keys_dir)], logs)
    wait_listening(idp_port, idp)
    authz = Authz(logs, jwks_url=f"http://127.0.0.1:{idp_port}/jwks.json", extra_args=["--jwks-refresh-seconds", "1"])
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **authz.upstreams(), **ratelimit.upstreams()})
    try:
        assert call(port, request_id=1).status == 200
        idp.stop()
        # The refreshes (every second) fail from now on: wait until two have.
        wait_until(lambda: metric(authz.metrics(), "mcp_authz_jwks_refresh_failures_total") >= 2)
        # Cached keys keep verifying tokens, until each token's own expiry.
        assert call(port, request_id=2).status == 200
        expired = call(port, request_id=3, exp=int(time.time()) - 60)
        assert expired.status == 401 and error_code(expired) == -31010
        # A key the cache does not know cannot be fetched: refused, not let through.
        now = int(time.time())
        rotated = jwt.encode(
            {"iss": ISSUER, "aud": RESOURCE, "iat": now, "exp": now + 600, "scope": READ_SCOPES, "sub": AGENT, "azp": AGENT},
            signing_key(), algorithm="RS256", headers={"kid": "rotated-key"},
        )
        body, headers = modern_call("get_account_balance", auth=False)
        unknown = request(port, "POST", "/mcp", body, headers + [("authorization", f"Bearer {rotated}")])
        assert unknown.status == 401, unknown.body
    finally:
        for process in (envoy, authz, idp):
            process.stop()


@pytest.mark.parametrize(
    "mode, status, code, output_status",
    [
        ("down", 503, -31030, "error"),
        ("reset", 503, -31030, "error"),
        ("hang", 504, -31031, "timeout"),
    ],
)
def test_mcp_server_failing_before_it_answers(logs, authz, ratelimit, mode, status, code, output_status):
    if mode == "down":
        upstream, upstream_port = None, free_port()  # nothing listens there
    else:
        upstream, upstream_port = faulty_upstream(logs, mode)
    envoy, port = start_gateway(
        logs, {MCP_CLUSTER: upstream_port, **authz.upstreams(), **ratelimit.upstreams()}, mutate=route_timeout(1)
    )
    try:
        response = call(port, request_id=11)
        assert response.status == status, response.body
        assert error_code(response) == code
        assert json.loads(response.body)["id"] == 11
        record = record_for(envoy, 11)
        assert (record["decision"], record["output_status"], record["http_status"]) == ("allowed", output_status, status)
        # The record's error_code is the code the client got (one table for both).
        assert record["error_code"] == code
        assert record["tool_name"] == "get_account_balance" and record["agent_id"] == AGENT
    finally:
        envoy.stop()
        if upstream:
            upstream.stop()


def test_mcp_server_resetting_a_started_stream_is_a_partial_call(logs, authz, ratelimit):
    upstream, upstream_port = faulty_upstream(logs, "reset-mid-stream")
    envoy, port = start_gateway(logs, {MCP_CLUSTER: upstream_port, **authz.upstreams(), **ratelimit.upstreams()})
    try:
        body, headers = modern_call("export_statement", request_id=12, arguments={"account_id": "acc-001"})
        try:
            response = request(port, "POST", "/mcp", body, headers)
            received = response.body
        except Exception as cut:  # the client sees the stream end abruptly
            received = repr(cut).encode()
        assert b'"result"' not in received
        record = record_for(envoy, 12)
        assert (record["decision"], record["output_status"], record["http_status"]) == ("allowed", "partial", 200)
    finally:
        envoy.stop()
        upstream.stop()


def test_broken_policy_and_limits_keep_the_last_good_ones(stack):
    envoy, port, authz, ratelimit, _ = stack
    assert call(port, request_id=1).status == 200
    good_policy = authz.policy.read_text()
    # Broken files: a syntax error, then a valid YAML with a wrong field.
    for broken in ("servers: [unclosed\n", "servers:\n  financial-data:\n    tools: 5\n"):
        refused = reload_failures(authz, ratelimit)
        authz.policy.write_text(broken)
        (ratelimit.config_dir / "limits.yaml").write_text(broken.replace("servers", "descriptors"))
        # Both services read the broken file and refused it (each counts a refusal).
        wait_until(lambda: all(n > before for n, before in zip(reload_failures(authz, ratelimit), refused)))
        assert call(port, request_id=2).status == 200, "the last good policy and limits stay"
        assert authz.proc.poll() is None and ratelimit.proc.poll() is None
    assert "policy.yaml" in authz.log() and "limits.yaml" in ratelimit.log()
    # A good file again is picked up: the tool now needs a scope the agent lacks, and
    # a limit of one call per minute applies.
    authz.policy.write_text(tightened(good_policy))
    (ratelimit.config_dir / "limits.yaml").write_text(ONE_PER_MINUTE)
    assert_tightened(port)


def reload_failures(authz, ratelimit) -> tuple[float, float]:
    """The refused reloads each service has counted (policy, limits)."""
    return (
        metric(authz.metrics(), "mcp_authz_policy_reload_failures_total"),
        metric(ratelimit.metrics(), "mcp_ratelimit_config_reload_failures_total"),
    )


def reloads(authz, ratelimit) -> tuple[int, int]:
    """The reloads that took effect, as each service logs them (policy, limits)."""
    return authz.log().count("policy reloaded"), ratelimit.log().count(" reloaded")


# A limit of one call per minute per tool, for every agent.
ONE_PER_MINUTE = yaml.safe_dump(limits_config([{
    "key": "tool_call", "descriptors": [{"key": "agent_id", "rate_limit": {"unit": "minute", "requests_per_unit": 1}}],
}]))


def tightened(policy_text: str) -> str:
    """The policy with get_account_balance needing a scope the test agent lacks."""
    policy = yaml.safe_load(policy_text)
    policy["servers"]["financial-data"]["tools"]["get_account_balance"] = ["mcp.server.financial-data:tools.write"]
    return yaml.safe_dump(policy)


def assert_tightened(port: int) -> None:
    """The tightened policy and ONE_PER_MINUTE come into force: each service reloads
    on its own, within moments of the change, so both are polled."""
    deadline = time.monotonic() + 10
    while call(port, request_id=3).status != 403 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert call(port, request_id=4).status == 403
    statuses = []
    while time.monotonic() < deadline + 5:
        statuses.append(call(port, "query_transactions", request_id=5 + len(statuses)).status)
        if statuses[-1] == 429:
            break
        time.sleep(0.2)
    assert statuses[-1] == 429, statuses


def configmap_update(directory, name: str, text: str, version: str) -> None:
    """Writes `name` into `directory` the way the kubelet updates a mounted ConfigMap:
    the file is a symlink through `..data`, which is swapped atomically to a new
    timestamped directory (rename of a temporary symlink)."""
    versioned = directory / f"..{version}"
    versioned.mkdir()
    (versioned / name).write_text(text)
    temporary = directory / "..data_tmp"
    temporary.symlink_to(versioned.name)
    temporary.replace(directory / "..data")
    link = directory / name
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(f"..data/{name}")


def test_configmap_style_updates_are_picked_up(stack):
    envoy, port, authz, ratelimit, _ = stack
    assert call(port, request_id=1).status == 200
    # Both files become ConfigMap-style symlinks (same content), then get new versions.
    loaded = reloads(authz, ratelimit)
    configmap_update(authz.policy.parent, authz.policy.name, authz.policy.read_text(), "v1")
    configmap_update(ratelimit.config_dir, "limits.yaml", (ratelimit.config_dir / "limits.yaml").read_text(), "v1")
    # Both services followed the symlinks and loaded the (same) files again.
    wait_until(lambda: all(n > before for n, before in zip(reloads(authz, ratelimit), loaded)))
    assert call(port, request_id=2).status == 200
    configmap_update(authz.policy.parent, authz.policy.name, tightened(authz.policy.read_text()), "v2")
    configmap_update(ratelimit.config_dir, "limits.yaml", ONE_PER_MINUTE, "v2")
    assert_tightened(port)
