"""Parser differential: hostile and odd requests through real Envoy (whole chain) to
the official-SDK MCP server. Each case has one defined outcome:

- refused by the gateway (status and JSON-RPC error code), and the server saw nothing;
- or labelled: the server received the gateway's labels, and the tool its SDK
  dispatched (as the SDK parsed the body) is exactly the tool named in the label that
  the authz and ratelimit services decided on. No case may reach the server with a
  tool name those decisions did not see.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass

import pytest
import yaml
from conftest import SeenLog
from harness import ROOT, Authz, Ratelimit, bearer, request, start_gateway, start_mcp_server
from harness.h2client import request_h2

from helpers import AGENT, META, MODERN

LIMIT = 1024 * 1024  # max_body_bytes in envoy/envoy.yaml
TOOL = "get_account_balance"
ARGS = {"account_id": "acc-001"}


@dataclass
class Labelled:
    """Reaches the server with these labels; the SDK dispatches `tool`, unless the
    server itself refuses the body (`status`, and then nothing is dispatched)."""

    tool: str | None
    method: str = "tools/call"
    status: int = 200


@dataclass
class Refused:
    status: int
    code: int | None


@dataclass
class Case:
    name: str
    body: bytes
    headers: list[tuple[str, str | bytes]]
    expect: Labelled | Refused
    transport: str = "h1"  # h1 (content-length), h1-bytes (chunked, 1 byte each), h2 (no length)


def body(method="tools/call", name=TOOL, arguments=None, id=1, params=None, raw=None) -> bytes:
    if raw is not None:
        return raw.encode() if isinstance(raw, str) else raw
    if params is None:
        params = {"name": name, "arguments": ARGS if arguments is None else arguments, "_meta": META}
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()


def mirrored(method="tools/call", name: str | bytes | None = TOOL) -> list[tuple[str, str | bytes]]:
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", MODERN),
        ("mcp-method", method),
    ]
    if name is not None:
        headers.append(("mcp-name", name))
    return headers


def sentinel(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


META_JSON = json.dumps(META)
PLAIN = body()


def nested(depth: int) -> bytes:
    """A call whose arguments nest `depth` arrays deep."""
    return body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{"account_id":"acc-001","x":%s},"_meta":%s}}'
                % (TOOL, "[" * depth + "]" * depth, META_JSON))


def padded_to(size: int) -> bytes:
    base = body(arguments={**ARGS, "pad": ""})
    return base.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(base)) + b'"')


CASES = [
    Case("plain call", PLAIN, mirrored(), Labelled(TOOL)),
    Case("duplicate tool name", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","name":"transfer_funds","_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32600)),
    Case("duplicate method", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"%s","_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32600)),
    Case("duplicate params", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","_meta":%s},"params":{"name":"transfer_funds"}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32600)),
    Case("case-variant keys are other members", body(raw='{"jsonrpc":"2.0","id":1,"Method":"tools/list","method":"tools/call","params":{"NAME":"transfer_funds","Name":"x","name":"%s","arguments":{"account_id":"acc-001"},"_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Labelled(TOOL)),
    Case("unicode escapes in method and name", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools\\/c\\u0061ll","params":{"name":"get\\u005faccount_balance","arguments":{"account_id":"acc-001"},"_meta":%s}}' % META_JSON),
         mirrored(), Labelled(TOOL)),
    Case("escaped name disagreeing with Mcp-Name", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"transfer\\u005ffunds","_meta":%s}}' % META_JSON),
         mirrored(), Refused(400, -32020)),
    Case("non-ASCII name with the base64 sentinel", body(name="données"), mirrored(name=sentinel("données")), Labelled("données")),
    Case("non-ASCII name as raw UTF-8 header", body(name="données"), mirrored(name="données".encode()), Refused(400, -32020)),
    Case("number as tool name", body(params={"name": 42, "_meta": META}), mirrored(name="42"), Refused(400, -32602)),
    Case("object as method", body(raw='{"jsonrpc":"2.0","id":1,"method":{"name":"tools/call"},"params":{"name":"%s"}}' % TOOL),
         mirrored(), Refused(400, -32600)),
    Case("array as params", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["%s"]}' % TOOL), mirrored(), Refused(400, -32600)),
    Case("nesting 100 deep in arguments", nested(100), mirrored(), Labelled(TOOL)),
    # Deeper than serde_json's 128 levels: the filter still reads the envelope (it skips
    # what it does not act on without recursing) and labels the call, with no input
    # hash; the SDK's parser gives up and the server refuses the body (-32700).
    Case("nesting 100000 deep in arguments", nested(100_000), mirrored(), Labelled(TOOL, status=400)),
    Case("id of 300 digits", body(id=int("9" * 300)), mirrored(), Labelled(TOOL)),
    Case("number 1e400 in arguments", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{"account_id":"acc-001","n":1e400},"_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Labelled(TOOL)),
    Case("byte order mark", b"\xef\xbb\xbf" + PLAIN, mirrored(), Refused(400, -32700)),
    Case("invalid UTF-8 in tool name", PLAIN.replace(b"get_account", b"get\xff_account"), mirrored(), Refused(400, -32700)),
    Case("invalid UTF-8 in an argument", PLAIN.replace(b"acc-001", b"acc\xc3-001"), mirrored(), Refused(400, -32700)),
    # Not a Unicode string, so not a name (serde_json refuses to decode it).
    Case("lone surrogate in tool name", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account_balance\\ud800","_meta":%s}}' % META_JSON),
         mirrored(), Refused(400, -32602)),
    Case("control character in tool name", body(name=TOOL + "\n"), mirrored(name=sentinel(TOOL + "\n")), Refused(403, None)),
    Case("body in one-byte chunks", PLAIN, mirrored(), Labelled(TOOL), transport="h1-bytes"),
    Case("HTTP/2 without content-length", PLAIN, mirrored(), Labelled(TOOL), transport="h2"),
    Case("gzip-compressed body", gzip.compress(PLAIN), mirrored() + [("content-encoding", "gzip")], Refused(415, -31002)),
    Case("body of limit+1 bytes", padded_to(LIMIT + 1), mirrored(), Refused(413, -31001)),
    Case("body of limit+1 bytes over HTTP/2", padded_to(LIMIT + 1), mirrored(), Refused(413, -31001), transport="h2"),
    Case("batch array", b"[" + PLAIN + b"]", mirrored(), Refused(400, -32600)),
    Case("forged gateway headers", PLAIN, mirrored() + [
        ("x-mcp-tool-name", "transfer_funds"), ("x-mcp-server-id", "other"), ("X-Agent-Id", "admin"),
        ("x-user-id", "root"), ("x-mcp-method", "ping")], Labelled(TOOL)),
    Case("Mcp-Name disagrees with the body", body(name="transfer_funds"), mirrored(), Refused(400, -32020)),
    Case("Mcp-Name sent twice", PLAIN, mirrored() + [("mcp-name", "transfer_funds")], Refused(400, -32020)),
    Case("tools/list", body("tools/list", params={"_meta": META}), mirrored("tools/list", None), Labelled(None, "tools/list")),
]


def decode(value: str) -> str:
    if value.startswith("=?base64?") and value.endswith("?="):
        return base64.b64decode(value[9:-2]).decode()
    return value


def send(port: int, case: Case):
    headers = case.headers + [bearer(AGENT)]
    if case.transport == "h2":
        chunks = [case.body[i : i + 16384] for i in range(0, len(case.body), 16384)]
        return request_h2(port, "POST", "/mcp", [(k, v.decode() if isinstance(v, bytes) else v) for k, v in headers], chunks)
    if case.transport == "h1-bytes":
        return request(port, "POST", "/mcp", None, headers, chunks=[bytes([b]) for b in case.body])
    return request(port, "POST", "/mcp", case.body, headers)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The shipped envoy.yaml (whole chain) in front of the SDK server, shared by the
    cases: yields (Envoy listener port, SeenLog)."""
    logs = tmp_path_factory.mktemp("differential")
    policy = yaml.safe_load((ROOT / "demo" / "policy.yaml").read_text())
    policy["servers"]["financial-data"]["tools"]["données"] = []
    policy_path = logs / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy, allow_unicode=True))
    seen = SeenLog(logs / "seen.jsonl")
    started = []
    try:
        server, server_port = start_mcp_server(logs, seen.path)
        started.append(server)
        authz = Authz(logs, policy=policy_path)
        started.append(authz)
        ratelimit = Ratelimit(logs)
        started.append(ratelimit)
        envoy, port = start_gateway(logs, {"mcp_server": server_port, **authz.upstreams(), **ratelimit.upstreams()})
        started.append(envoy)
        yield port, seen
    finally:
        for process in reversed(started):
            process.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_has_its_defined_outcome(gateway, case):
    port, seen = gateway
    posts_before, dispatched_before = len(seen.posts()), len(seen.dispatches())
    response = send(port, case)
    posts = seen.posts()[posts_before:]
    dispatched = seen.dispatches()[dispatched_before:]

    if isinstance(case.expect, Refused):
        assert response.status == case.expect.status, response.body[:300]
        if case.expect.code is not None:
            assert json.loads(response.body)["error"]["code"] == case.expect.code, response.body[:300]
        assert posts == [] and dispatched == [], (posts, dispatched)
        return

    assert response.status == case.expect.status, response.body[:300]
    assert len(posts) == 1, posts
    headers = posts[0]
    # Only the gateway's labels and the verified identity, never a client's copy.
    assert decode(headers["x-mcp-method"]) == case.expect.method
    assert headers["x-mcp-server-id"] == "financial-data"
    assert headers["x-agent-id"] == AGENT
    assert "x-user-id" not in headers and "authorization" not in headers
    if case.expect.tool is None:
        assert "x-mcp-tool-name" not in headers
        assert dispatched == []
        return
    label = decode(headers["x-mcp-tool-name"])
    assert label == case.expect.tool
    # What the SDK acted on is what authz and ratelimit decided on.
    assert dispatched == ([label] if case.expect.status == 200 else []), dispatched
