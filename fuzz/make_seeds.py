#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets into fuzz/seeds/<target>/.

The request cases follow the parser-differential corpus of tests/e2e/test_differential.py
in the fuzz input form (see fuzz/src/input.rs); flow inputs add the three control bytes
(failing host call, body chunk size, response type), and the fleet-mode ones a route
section (fuzz/src/flow.rs, fuzz/src/route.rs). Rerun after adding a case:
    python3 fuzz/make_seeds.py
"""
import json
import pathlib
import re
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
MODERN = "2026-07-28"


def request(method, params=None, id=1, **extra):
    message = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    message.update(extra)
    return json.dumps(message).encode()


def call(name, arguments=None, meta=True):
    params = {"name": name, "arguments": arguments or {"account": "acct-1"}}
    if meta:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN}
    return request("tools/call", params)


def head(method="tools/call", name=None, version=MODERN, extra=()):
    lines = [f"mcp-protocol-version: {version}", f"mcp-method: {method}"]
    if name is not None:
        lines.append(f"mcp-name: {name}")
    lines.extend(extra)
    return ("\n".join(lines) + "\n\n").encode()


CALL = call("get_account_balance")
REQUESTS = {
    "modern-call": head(name="get_account_balance") + CALL,
    "handshake-call": request("tools/call", {"name": "get_account_balance", "arguments": {}}),
    "initialize": request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                         "clientInfo": {"name": "c", "version": "1"}}),
    "notification": b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
    "client-response": b'{"jsonrpc":"2.0","id":"s-1","result":{}}',
    "prompts-get": head("prompts/get", "summarise") + request(
        "prompts/get", {"name": "summarise", "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}),
    "resources-read": head("resources/read", "file:///a.txt") + request(
        "resources/read", {"uri": "file:///a.txt", "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}),
    "duplicate-method": b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_account"}}',
    "duplicate-name": head(name="get_account_balance")
    + b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account_balance","name":"delete_account"}}',
    "case-variant-keys": b'{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"tools/list","params":{"NAME":"delete_account"}}',
    # Keys Go's encoding/json reads as the gateway's (Unicode simple case folding).
    "fold-name": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account_balance","Name":"delete_account"}}',
    "fold-params-long-s": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"param\\u017f":{"name":"b"}}',
    "fold-params-raw-long-s": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"param\u017f":{"name":"b"}}'.encode(),
    "fold-kelvin": '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"x","\u212aey":1}}}'.encode(),
    "fold-meta-version": head("tools/list") + b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/PROTOCOLVERSION":"2025-06-18"}}}',
    "request-and-response": b'{"jsonrpc":"2.0","id":1,"result":{},"method":"tools/call","params":{"name":"delete_account"}}',
    "long-tool-name": request("tools/call", {"name": "t" * 129}),
    "long-method": request("m" * 200),
    "long-uri": request("resources/read", {"uri": "file:///" + "u" * 2100}),
    "long-id": request("ping", id="i" * 300),
    "big-integer-argument": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"n":9007199254740993}}}',
    "huge-integer-argument": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"n":123456789012345678901234}}}',
    "escaped-names": head(name="get_account_balance")
    + b'{"jsonrpc":"2.0","id":1,"method":"tools\\/c\\u0061ll","params":{"name":"get\\u005faccount_balance","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}',
    "non-ascii-sentinel": head(name="=?base64?" + "w6ljaG8=" + "?=") + call("\u00e9cho"),
    "non-ascii-raw-header": head(name="\u00e9cho") + call("\u00e9cho"),
    "number-name": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":42}}',
    "object-method": b'{"jsonrpc":"2.0","id":1,"method":{"a":"tools/call"}}',
    "deep-nesting": head(name="get_account_balance") + call("get_account_balance", {"a": json.loads("[" * 200 + "]" * 200)}),
    "huge-id": b'{"jsonrpc":"2.0","id":' + b"9" * 400 + b',"method":"tools/list"}',
    "huge-number-argument": head(name="get_account_balance")
    + b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account_balance","arguments":{"n":1e400},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}',
    "bom": b"\xef\xbb\xbf" + CALL,
    "invalid-utf8": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_\xff_balance"}}',
    "lone-surrogate": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get\\ud800"}}',
    "batch": b"[" + CALL + b"," + CALL + b"]",
    "mcp-name-disagrees": head(name="get_account_balance") + call("delete_account"),
    "mcp-method-disagrees": head("tools/list", None) + CALL,
    "forged-gateway-headers": head(name="get_account_balance", extra=[
        "x-mcp-tool-name: delete_account", "x-agent-id: admin", "X-User-Id: root",
        "x-mcp-server-id: other"]) + CALL,
    "compressed": head(name="get_account_balance", extra=["content-encoding: gzip"]) + CALL,
    "content-length-lies": head(name="get_account_balance", extra=["content-length: 3"]) + CALL,
    "get": b":method: GET\naccept: text/event-stream\n\n",
    "put": b":method: PUT\n\n" + CALL,
    "other-path": b":path: /admin\nx-mcp-tool-name: forged\n\n" + CALL,
    "repeated-mcp-name": head(name="get_account_balance", extra=["mcp-name: delete_account"]) + CALL,
    "empty-body": b"",
    "trailing-garbage": CALL + b" {}",
}

# Flow inputs of the fleet mode (servers_from_routes): a route section after the
# request (and response) gives the matched route's mcp_gateway metadata, and what it
# becomes when Envoy picks the route again ("after KEY: VALUE", "after KEY" for gone);
# see fuzz/src/route.rs.
ROUTE_MARK = b"\n--route--\n"
HR = b"server_id: hr-directory\nserver_version: 2.0.1\ntools: get_account_balance,find_employee"
GET_STREAM = b":method: GET\n:path: /hr/mcp\naccept: text/event-stream\n\n"
ROUTED = {
    "routed-call": (REQUESTS["modern-call"], HR),
    "routed-forged-server-id": (REQUESTS["forged-gateway-headers"], HR),
    "routed-other-path": (b":path: /hr/mcp\n" + REQUESTS["modern-call"], HR),
    "routed-unlisted-tool": (head(name="delete_account") + call("delete_account"), HR),
    "routed-get-stream": (GET_STREAM, HR),
    "routed-rerouted-same-server": (REQUESTS["modern-call"], HR + b"\nafter server_version: 2.0.2\nafter tools: find_employee"),
    "routed-rerouted-elsewhere": (REQUESTS["modern-call"], HR + b"\nafter server_id: payments"),
    "routed-rerouted-to-no-server": (REQUESTS["modern-call"], HR + b"\nafter server_id\nafter server_version\nafter tools"),
    "routed-rerouted-to-unregistered": (REQUESTS["modern-call"], HR + b"\nafter server_id\nafter unregistered: true"),
    "routed-rerouted-invalid": (REQUESTS["modern-call"], HR + b"\nafter server_id: not an id"),
    "routed-get-rerouted": (GET_STREAM, HR + b"\nafter server_id: payments"),
    "routed-refused-then-rerouted": (REQUESTS["mcp-name-disagrees"], HR + b"\nafter server_id: payments"),
    "routed-unregistered": (b":path: /nobody/mcp?x=1\n" + REQUESTS["modern-call"], b"unregistered: true"),
    "routed-unregistered-get": (b":method: GET\n:path: /nobody/mcp\n\n", b"unregistered"),
    "routed-server-and-unregistered": (REQUESTS["modern-call"], HR + b"\nunregistered: true"),
    "routed-no-metadata": (REQUESTS["forged-gateway-headers"], b""),
    "routed-other-metadata": (REQUESTS["forged-gateway-headers"], b"owner: team-a\nafter server_id: hr-directory"),
    "routed-invalid-server-id": (REQUESTS["modern-call"], b"server_id: not an id"),
    "routed-long-server-id": (REQUESTS["modern-call"], b"server_id: " + b"a" * 129),
    "routed-non-utf8-server-id": (REQUESTS["modern-call"], b"server_id: hr-\xff"),
    "routed-empty-version": (REQUESTS["modern-call"], b"server_id: hr-directory\nserver_version: "),
    # Canary releases: the metadata of the cluster that served the request
    # ("cluster KEY: VALUE") names the version the record and the stats carry.
    "routed-canary-call": (REQUESTS["modern-call"], HR + b"\ncluster server_id: hr-directory\ncluster server_version: 2.1.0-rc.1+b:7\ncluster track: canary"),
    "routed-canary-tag-injection": (REQUESTS["modern-call"], HR + b"\ncluster server_version: 1;tool=x"),
    "routed-canary-other-server": (REQUESTS["modern-call"], HR + b"\ncluster server_id: payments\ncluster server_version: 9.9.9"),
    "routed-canary-picked-again": (REQUESTS["modern-call"], HR + b"\ncluster server_version: 2.0.1\nafter cluster server_version: 2.1.0"),
    "routed-canary-get-stream": (GET_STREAM, HR + b"\ncluster server_version: 2.1.0\ncluster track: stable"),
}

RESPONSES = {
    "json-result": (0, b'{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}'),
    "json-is-error": (0, b'{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"no"}]}}'),
    "json-error": (0, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}'),
    "json-lookalike-nested": (0, b'{"jsonrpc":"2.0","id":1,"result":{"error":{"code":1},"isError":true,"id":2}}'),
    "json-escaped-string-id": (0, b'{"jsonrpc":"2.0","id":"a\\"b","result":{}}'),
    "sse-progress-then-result": (1, b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n'
                                 b'data: {"jsonrpc":"2.0","id":1,\ndata: "result":{"isError":false}}\n\n'),
    "sse-crlf-bom-comments": (1, b'\xef\xbb\xbf: comment\r\nid: 7\r\ndata: {"jsonrpc":"2.0","id":1,"error":{"code":-32603}}\r\n\r\n'),
    "sse-cr-only": (1, b'data: {"jsonrpc":"2.0","id":1,"result":{}}\r\rdata: x\r'),
    "sse-unterminated": (1, b'data: {"jsonrpc":"2.0","id":1,"result":{}}'),
}


def write(target, name, data):
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data)


def main():
    for name, data in REQUESTS.items():
        write("request", name, data)
    answer = b'{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}'
    for name, data in REQUESTS.items():
        # Every host call succeeds; the body in one chunk, then in 1-byte chunks.
        write("flow", name, b"\x00\x00\x00" + data + b"\n--response--\n" + answer)
        write("flow", f"{name}-byte-chunks", b"\x00\x01\x02" + data)
    # One host call after another fails, on a call answered over SSE.
    sse = b'data: {"jsonrpc":"2.0","id":1,"result":{"isError":true}}\n\n'
    for fail_at in range(1, 24):
        write("flow", f"modern-call-failing-call-{fail_at}",
              bytes([fail_at, 7, 9]) + REQUESTS["modern-call"] + b"\n--response--\n" + sse)
    write("flow", "malformed-header-map", b"\xff\x00\x00\x05\x00\x00\x00\x01")
    # The fleet mode: the same request on routes that name servers, none, or change
    # when picked again (every flow input also runs there on the default route).
    for name, (data, route) in ROUTED.items():
        write("flow", name, b"\x00\x00\x00" + data + b"\n--response--\n" + answer + ROUTE_MARK + route)
        write("flow", f"{name}-byte-chunks", b"\x00\x01\x02" + data + ROUTE_MARK + route)
    for fail_at in range(1, 32):
        write("flow", f"routed-call-failing-call-{fail_at}",
              bytes([fail_at, 7, 9]) + REQUESTS["modern-call"] + b"\n--response--\n" + sse
              + ROUTE_MARK + HR + b"\nafter server_version: 2.0.2")
    for fail_at in range(1, 12):
        write("flow", f"routed-unregistered-failing-call-{fail_at}",
              bytes([fail_at, 0, 0]) + ROUTED["routed-unregistered"][0] + ROUTE_MARK + b"unregistered: true")
    for name, (kind, body) in RESPONSES.items():
        write("response", name, bytes([kind, 0, len(body) // 2]) + body)
    # Config parsers: the shipped files, and broken variants of each.
    # The bootstrap's filter config (servers from routes) and the sidecar's form (one
    # server, as registry/src/render/sidecar.rs writes it).
    envoy = yaml.safe_load((ROOT / "envoy" / "fleet.yaml").read_text())
    plugin = find_plugin_config(envoy)
    write("config", "filter-shipped", b"\x00" + plugin.encode())
    write("config", "filter-one-server", b"\x00" + b'{"server_id":"financial-data","server_version":"1.3.2","mcp_paths":["/mcp"],"metrics":{"tool_names":["get_account_balance"]}}')
    write("config", "filter-unknown-field", b"\x00" + b'{"server_id":"a","mcp_path":"/mcp"}')
    write("config", "filter-bad-limit", b"\x00" + b'{"server_id":"a","max_body_bytes":-1}')
    write("config", "filter-jwt-identity", b"\x00" + b'{"server_id":"a","agent_identity":{"source":"jwt_authn","payload_in_metadata":"jwt","claim":"sub"}}')
    # What render writes for registry/examples (its golden files).
    golden = ROOT / "registry" / "tests" / "golden"
    policy = (golden / "policy.yaml").read_bytes()
    write("config", "policy-shipped", b"\x01" + policy)
    write("config", "policy-wrong-type", b"\x01" + b"servers: [1, 2]\n")
    write("config", "policy-bad-server-id", b"\x01" + b"servers:\n  'a b':\n    tools: {x: [s]}\n")
    limits = (golden / "limits" / "limits.yaml").read_bytes()
    write("config", "limits-shipped", b"\x02" + limits)
    write("config", "limits-bad-unit", b"\x02" + limits.replace(b"MINUTE", b"FORTNIGHT", 1))
    write("config", "limits-not-yaml", b"\x02" + b"domain: [unclosed\n")
    jwks = (ROOT / "envoy" / "compose" / "jwks.json").read_bytes()
    write("config", "jwks-shipped", b"\x03" + jwks)
    write("config", "jwks-symmetric-only", b"\x03" + b'{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}')


def list_seeds():
    """The lists target: framing byte, caller byte, two split bytes, the answer."""
    def answer(tools, **extra):
        result = {"tools": tools, **extra}
        return json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()

    tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("a", "b", "read", "write", "other")]
    cases = {
        "tools-json": (0, 0, answer(tools, nextCursor="2", cacheScope="public", ttlMs=5)),
        "tools-show-unregistered": (0, 4, answer(tools)),
        "tools-nothing": (0, 2, answer(tools)),
        "prompts-all": (0, 3, json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"prompts": [{"name": "p"}]}}).encode()),
        "folded-name": (0, 0, b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","NAME":"write"}]}}'),
        "long-s-tools": (0, 0, '{"jsonrpc":"2.0","id":1,"result":{"tools":[],"toolſ":[{"name":"write"}]}}'.encode()),
        "duplicate-result": (0, 0, b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"write"}]}}'),
        "other-id": (0, 0, b'{"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"write"}]}}'),
        "too-large": (0, 0, answer([{"name": "write", "description": "x" * 5000}])),
    }
    for name, (framing, who, body) in cases.items():
        write("lists", name, bytes([framing, who, 0, 17]) + body)
        event = b"event: message\r\ndata: " + body + b"\r\n\r\n"
        progress = b'data: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n'
        write("lists", name + "-sse", bytes([framing + 1, who, 0, 40]) + progress + event)
    write("lists", "sse-multiline-data", bytes([1, 0, 0, 3]) + b'data: {"jsonrpc":"2.0","id":1,\ndata: "result":{"tools":[{"name":"write"}]}}\n\n')
    write("lists", "sse-cut-off", bytes([1, 0, 0, 3]) + b'data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"write"}]}}')
    write("lists", "sse-bom-cr", bytes([1, 0, 0, 1]) + b'\xef\xbb\xbfdata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"b"}]}}\r\r')


def argument_seeds():
    """The arguments target: control byte (schema, mode), header lines, body."""
    def body(arguments, raw=None):
        if raw is not None:
            return raw
        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "t", "arguments": arguments}}).encode()

    def seed(name, schema, mode, arguments=None, headers=(), raw=None):
        head = "".join(f"{k}: {v}\n" for k, v in headers) + "\n"
        write("arguments", name, bytes([schema | mode << 2]) + head.encode() + body(arguments, raw))

    seed("valid", 0, 0, {"account_id": "acc-1", "limit": 5})
    seed("wrong-type", 0, 0, {"account_id": 7})
    seed("missing-required", 0, 0, {"limit": 5})
    seed("extra-field", 0, 1, {"account_id": "acc-1", "secret_value": "hunter2-password"})
    seed("pattern", 0, 0, {"account_id": "not-an-account-number"})
    seed("off", 0, 2, {"account_id": 7})
    seed("draft7-enum", 1, 0, {"unit": "kelvin", "tags": ["a", "longer-than-eight"]})
    seed("absent-arguments", 0, 0, raw=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}')
    seed("null-arguments", 0, 0, raw=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":null}}')
    seed("duplicate-arguments", 0, 0, raw=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"account_id":"acc-1"},"arguments":{"account_id":7}}}')
    seed("folded-arguments", 0, 0, raw=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"account_id":"acc-1"},"Arguments":{"account_id":7}}}')
    seed("headers-match", 2, 0, {"region": "eu", "dry_run": True, "count": 3},
         [("mcp-param-region", "eu"), ("mcp-param-dry-run", "true"), ("mcp-param-count", "3")])
    seed("header-mismatch", 2, 2, {"region": "eu"}, [("mcp-param-region", "us")])
    seed("header-base64", 2, 0, {"region": "données"}, [("mcp-param-region", "=?base64?ZG9ubsOpZXM=?=")])
    seed("header-without-argument", 2, 0, {"region": "eu"}, [("mcp-param-region", "eu"), ("mcp-param-count", "1")])
    seed("header-integer", 2, 0, {"region": "eu", "count": 42}, [("mcp-param-region", "eu"), ("mcp-param-count", "42.0")])
    seed("nested", 3, 0, {"filter": {"from": "2026-13-45", "amount": -1}, "field_0001": {}})


def find_plugin_config(node):
    """The wasm filter's JSON configuration string in an Envoy config."""
    if isinstance(node, dict):
        if node.get("@type", "").endswith("google.protobuf.StringValue") and "max_body_bytes" in node.get("value", ""):
            return node["value"]
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = find_plugin_config(child)
        if found:
            return found
    return None


if __name__ == "__main__":
    main()
    list_seeds()
    argument_seeds()
