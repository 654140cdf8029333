"""The authz-service through real Envoy, with the official SDK client and server."""

from __future__ import annotations

import json

import anyio
import pytest
from harness import MCP_CLUSTER, Authz, request, start_gateway
from harness.authz import METADATA_URL, READ_SCOPES, token

from e2e.helpers import AGENT, connect, echoed_headers, modern_call, values

WRITE = "mcp.server.financial-data:tools.write"


def test_allowed_call_reaches_the_server_with_verified_identity(mcp_gateway):
    url, seen = mcp_gateway

    async def session():
        async with connect(url, agent="agent-prod-001", user="alice") as client:
            return await client.call_tool("get_account_balance", {"account_id": "acc-001"})

    result = anyio.run(session)
    assert not result.is_error
    call = next(h for h in seen.posts() if h.get("x-mcp-tool-name") == "get_account_balance")
    assert call["x-agent-id"] == "agent-prod-001"
    assert call["x-user-id"] == "alice"
    assert "authorization" not in call, "the client's token must never reach the MCP server"


def test_write_scope_allows_the_write_tool(mcp_gateway):
    url, seen = mcp_gateway

    async def session():
        async with connect(url, agent="treasury-agent", scopes=f"{READ_SCOPES} {WRITE}") as client:
            return await client.call_tool("transfer_funds", {"from_account": "acc-001", "to_account": "acc-002", "amount": 5})

    assert "transferred 5.00" in anyio.run(session).content[0].text
    call = next(h for h in seen.posts() if h.get("x-mcp-tool-name") == "transfer_funds")
    assert call["x-agent-id"] == "treasury-agent"
    assert "x-user-id" not in call


def test_no_token_is_401_with_the_metadata_challenge(mcp_gateway):
    url, seen = mcp_gateway
    port = int(url.split(":")[2].split("/")[0])
    body, headers = modern_call("get_account_balance", request_id="r-401", auth=False)
    response = request(port, "POST", "/mcp", body, headers)
    assert response.status == 401
    assert response.header("www-authenticate") == f'Bearer resource_metadata="{METADATA_URL}"'
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": "r-401",
        "error": {"code": -31010, "message": "authorization required: send an OAuth bearer token"},
    }
    assert not any(h.get("x-mcp-tool-name") for h in seen.posts())


def test_expired_token_is_401_invalid_token(mcp_gateway):
    url, _ = mcp_gateway
    port = int(url.split(":")[2].split("/")[0])
    body, headers = modern_call("get_account_balance", auth=False)
    expired = token(AGENT, exp=1_000_000_000)
    response = request(port, "POST", "/mcp", body, headers + [("authorization", f"Bearer {expired}")])
    assert response.status == 401
    assert response.header("www-authenticate") == (
        f'Bearer error="invalid_token", error_description="token has expired", resource_metadata="{METADATA_URL}"'
    )
    assert response.json()["error"]["code"] == -31010


def test_missing_scope_is_403_with_the_scope_challenge(mcp_gateway):
    url, seen = mcp_gateway
    port = int(url.split(":")[2].split("/")[0])
    body, headers = modern_call(
        "transfer_funds", request_id=77, arguments={"from_account": "a", "to_account": "b", "amount": 1}
    )
    response = request(port, "POST", "/mcp", body, headers)
    assert response.status == 403
    assert response.header("www-authenticate") == (
        'Bearer error="insufficient_scope", '
        f'scope="mcp.server.financial-data:tools.read {WRITE}", '
        f'resource_metadata="{METADATA_URL}"'
    )
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 77,
        "error": {"code": -31011, "message": f"insufficient scope: missing {WRITE}"},
    }
    assert not any(h.get("x-mcp-tool-name") == "transfer_funds" for h in seen.posts())


def test_forged_identity_never_reaches_the_server(mcp_gateway):
    url, seen = mcp_gateway
    port = int(url.split(":")[2].split("/")[0])
    body, headers = modern_call("get_account_balance", arguments={"account_id": "acc-001"})
    forged = [("x-agent-id", "admin-agent"), ("x-user-id", "ceo"), ("X-Agent-Id", "root")]
    response = request(port, "POST", "/mcp", body, headers + forged)
    assert response.status == 200, response.body
    call = [h for h in seen.records() if h["method"] == "POST"][-1]["headers"]
    assert [v for k, v in call if k == "x-agent-id"] == [AGENT]
    assert [v for k, v in call if k == "x-user-id"] == []


def test_metadata_is_served_without_a_token(mcp_gateway):
    url, _ = mcp_gateway
    port = int(url.split(":")[2].split("/")[0])
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]:
        response = request(port, "GET", path)
        assert response.status == 200, (path, response.body)
        document = response.json()
        assert document["resource"] == "https://gateway.demo.test/mcp"
        assert document["authorization_servers"] == ["https://issuer.demo.test"]
        assert WRITE in document["scopes_supported"]


def test_authz_service_down_fails_closed(logs, mcp_server):
    port, seen = mcp_server
    authz = Authz(logs)
    envoy, listener = start_gateway(logs, {MCP_CLUSTER: port, **authz.upstreams()})
    try:
        authz.stop()
        body, headers = modern_call("get_account_balance", request_id=5)
        response = request(listener, "POST", "/mcp", body, headers)
        assert response.status == 503
        assert response.header("content-type") == "application/json"
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": 5,
            "error": {"code": -31012, "message": "authorization service unavailable: request refused"},
        }
        assert not any(h.get("x-mcp-tool-name") for h in seen.posts())
    finally:
        envoy.stop()


@pytest.fixture
def credential_gateway(logs, echo, tmp_path):
    (tmp_path / "upstream.token").write_text("Bearer server-credential-123\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "servers:\n  financial-data:\n    tools:\n      get_account_balance: []\n"
        f"    upstream_credential_file: {tmp_path / 'upstream.token'}\n"
    )
    authz = Authz(logs, policy=policy)
    envoy, port = start_gateway(logs, {MCP_CLUSTER: echo, **authz.upstreams()})
    yield port
    envoy.stop()
    authz.stop()


def test_upstream_credential_replaces_the_client_token(credential_gateway):
    body, headers = modern_call("get_account_balance")
    response = request(credential_gateway, "POST", "/mcp", body, headers)
    assert response.status == 200, response.body
    seen = echoed_headers(response)
    assert values(seen, "authorization") == ["Bearer server-credential-123"]
    assert values(seen, "x-agent-id") == [AGENT]
    assert json.loads(response.body)["body"] == body
