"""Parser differential: hostile and odd requests through real Envoy (the whole chain:
wasm filter, ext_authz, ratelimit) to MCP servers on three parser stacks, the oracles
of tests/harness/oracles.py: the official Python SDK (pydantic), the official
TypeScript SDK (JSON.parse + zod) and Go's encoding/json (which matches keys
case-insensitively with Unicode simple case folding, the CVE-2026-27896 class).
Each case is sent once through a gateway in front of each oracle and has one defined
outcome:

- Refused: every gateway answers the documented status and JSON-RPC code, and no
  oracle received anything.
- Labelled: every gateway forwards it with its labels (method, tool, verified agent,
  never a client's copy), and every oracle dispatched exactly the labelled method
  and tool, the ones the authz and ratelimit services decided on.

An oracle whose own parser refuses a forwarded body dispatches nothing. That is safe
(nothing ran under a name the gateway did not check), but it is not agreement: the
case then says nothing about how that stack would have read the body. So a refusal is
never accepted silently: a Labelled case names the oracles expected to refuse it
(`refused_by`), each of them must answer an error and dispatch nothing, and every
other oracle must dispatch exactly the label. A stack that starts or stops refusing a
case fails the test until the case is relabelled on purpose. What a case shows about
agreement rests on the oracles that dispatched; a case that every oracle refuses
(none today) would show only that nothing acted on it.

The run writes a table (case, expectation, gateway answer, what each oracle
dispatched) to differential.md in the test's log directory, and also to the path in
DIFFERENTIAL_TABLE when that is set.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from harness import MCP_CLUSTER, Authz, Ratelimit, bearer, request, start_gateway
from harness import single
from harness.client import Response
from harness.h2client import request_h2
from harness.oracles import ORACLES, Dispatch, build_go_oracle, start_oracles

from e2e.helpers import AGENT, META, MODERN

LIMIT = 1024 * 1024  # max_body_bytes in envoy/fleet.yaml
TOOL = "get_account_balance"
OTHER = "transfer_funds"  # needs tools.write, which AGENT's token lacks
ARGS = {"account_id": "acc-001"}


@dataclass
class Labelled:
    """Forwarded with these labels; every oracle dispatches `method` (and `tool`),
    except those in `refused_by`, whose own parser refuses the body."""

    tool: str | None
    method: str = "tools/call"
    refused_by: tuple[str, ...] = ()


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


def transport_headers() -> list[tuple[str, str | bytes]]:
    return [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", MODERN),
    ]


def mirrored(method="tools/call", name: str | bytes | None = TOOL) -> list[tuple[str, str | bytes]]:
    headers = transport_headers() + [("mcp-method", method)]
    if name is not None:
        headers.append(("mcp-name", name))
    return headers


def sentinel(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


META_JSON = json.dumps(META)
ARGS_JSON = json.dumps(ARGS)
PLAIN = body()
# A complete, valid params object for the labelled tool, and one for the other tool.
PARAMS = '{"name":"%s","arguments":%s,"_meta":%s}' % (TOOL, ARGS_JSON, META_JSON)
OTHER_PARAMS = '{"name":"%s","arguments":{"from_account":"acc-001","to_account":"acc-002","amount":1},"_meta":%s}' % (
    OTHER, META_JSON)


def envelope(rest: str) -> bytes:
    """A tools/call body: `rest` is everything after the jsonrpc and id members."""
    return ('{"jsonrpc":"2.0","id":1,%s}' % rest).encode()


def nested(depth: int) -> bytes:
    """A call whose arguments nest `depth` arrays deep."""
    return body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{"account_id":"acc-001","x":%s},"_meta":%s}}'
                % (TOOL, "[" * depth + "]" * depth, META_JSON))


def padded_to(size: int) -> bytes:
    base = body(arguments={**ARGS, "pad": ""})
    return base.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(base)) + b'"')


def meta_with(extra: str) -> str:
    """The 2026-07-28 _meta object with one more member."""
    return META_JSON[:-1] + ", " + extra + "}"


# Keys spelled like one the gateway reads but in other letter case (ASCII, or U+017F
# LATIN SMALL LETTER LONG S, which simple case folding maps to s). Go's encoding/json
# fills the field from such a key, the last one in the body winning; the Python and
# TypeScript SDKs ignore it. The gateway must refuse them (400, -32600).
FOLDED = Refused(400, -32600)
LONG_S = "\u017f"

CASES = [
    Case("plain call", PLAIN, mirrored(), Labelled(TOOL)),
    Case("duplicate tool name", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","name":"transfer_funds","_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32600)),
    Case("duplicate method", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"%s","_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32600)),
    Case("duplicate params", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","_meta":%s},"params":{"name":"transfer_funds"}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32600)),
    # Was forwarded (the case-variant keys were taken for other members) until the Go
    # oracle showed that a server on encoding/json reads them.
    Case("case-variant keys Method, NAME, Name", body(raw='{"jsonrpc":"2.0","id":1,"Method":"tools/list","method":"tools/call","params":{"NAME":"transfer_funds","Name":"x","name":"%s","arguments":{"account_id":"acc-001"},"_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), FOLDED),
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
    # Deeper than the 128 levels the audit's input_hash represents: refused rather than
    # forwarded without a hash. (Before that rule the gateway labelled and forwarded it;
    # Python's json and Go's encoding/json, which stops at 10,000 levels, refused the
    # body, V8's JSON.parse did not.)
    Case("nesting 100000 deep in arguments", nested(100_000), mirrored(), Refused(400, -32602)),
    # Ids are bounded at 256 bytes (they are echoed into a header and the audit).
    Case("id of 300 digits", body(id=int("9" * 300)), mirrored(), Refused(400, -32600)),
    # Within the bound, but JSON.parse reads it as a float (1e249): the TypeScript SDK
    # accepts only ids it can echo exactly and refuses the body (-32600).
    Case("id of 250 digits", body(id=int("9" * 250)), mirrored(), Labelled(TOOL, refused_by=("typescript",))),
    # The TypeScript SDK's envelope is strict (unknown members refused); JSON-RPC 2.0
    # does not forbid them, and the other two stacks ignore them.
    Case("unknown top-level member", envelope('"method":"tools/call","params":%s,"x":1' % PARAMS), mirrored(),
         Labelled(TOOL, refused_by=("typescript",))),
    # Out of the double range (Python reads inf, JSON.parse Infinity): the audit's
    # input_hash cannot represent it faithfully, so refused.
    Case("number 1e400 in arguments", body(raw='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{"account_id":"acc-001","n":1e400},"_meta":%s}}' % (TOOL, META_JSON)),
         mirrored(), Refused(400, -32602)),
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
    # Case folding (Go's encoding/json; CVE-2026-27896). Go keeps the last key that
    # folds to a field, so a variant after the real key changes what Go dispatches.
    Case("params.Name after params.name",
         envelope('"method":"tools/call","params":{"name":"%s","Name":"%s","arguments":%s,"_meta":%s}' % (TOOL, OTHER, ARGS_JSON, META_JSON)),
         mirrored(), FOLDED),
    Case("params.NAME after params.name",
         envelope('"method":"tools/call","params":{"name":"%s","NAME":"%s","arguments":%s,"_meta":%s}' % (TOOL, OTHER, ARGS_JSON, META_JSON)),
         mirrored(), FOLDED),
    Case("params.nAme after params.name",
         envelope('"method":"tools/call","params":{"name":"%s","nAme":"%s","arguments":%s,"_meta":%s}' % (TOOL, OTHER, ARGS_JSON, META_JSON)),
         mirrored(), FOLDED),
    # Every stack dispatches the same tool here; refused all the same (the order of
    # keys must not decide whether a body is safe).
    Case("params.Name before params.name",
         envelope('"method":"tools/call","params":{"Name":"%s","name":"%s","arguments":%s,"_meta":%s}' % (OTHER, TOOL, ARGS_JSON, META_JSON)),
         mirrored(), FOLDED),
    Case("Method tools/list after method tools/call",
         envelope('"method":"tools/call","params":%s,"Method":"tools/list"' % PARAMS), mirrored(), FOLDED),
    # Labelled tools/list (no tool, so no tool scope checked) while Go calls transfer_funds.
    Case("METHOD tools/call after method tools/list",
         envelope('"method":"tools/list","params":%s,"METHOD":"tools/call"' % OTHER_PARAMS), mirrored("tools/list", None), FOLDED),
    Case("Params after params", envelope('"method":"tools/call","params":%s,"Params":%s' % (PARAMS, OTHER_PARAMS)), mirrored(), FOLDED),
    Case("param\u017f (raw UTF-8 U+017F) after params",
         envelope('"method":"tools/call","params":%s,"param%s":%s' % (PARAMS, LONG_S, OTHER_PARAMS)), mirrored(), FOLDED),
    Case("param\\u017f (escaped U+017F) after params",
         envelope('"method":"tools/call","params":%s,"param\\u017f":%s' % (PARAMS, OTHER_PARAMS)), mirrored(), FOLDED),
    Case("only Params, no params", envelope('"method":"tools/call","Params":%s' % OTHER_PARAMS), mirrored(name=OTHER), FOLDED),
    Case("only param\u017f, no params", envelope('"method":"tools/call","param%s":%s' % (LONG_S, OTHER_PARAMS)), mirrored(name=OTHER), FOLDED),
    # Response-shaped (id + result), so not a request to Python or TypeScript; Go's
    # classification (as the Go SDK's jsonrpc2) goes by the method it fills from Method.
    # Sent without Mcp-Method/Mcp-Name, as a client posting a response would.
    Case("response with Method and params", envelope('"result":{},"Method":"tools/call","params":%s' % OTHER_PARAMS), transport_headers(), FOLDED),
    # Both request- and response-shaped: parsers that try one shape first disagree.
    Case("request that also carries result", envelope('"method":"tools/call","params":%s,"result":{}' % PARAMS), mirrored(), Refused(400, -32600)),
    Case("response with error that also carries method",
         envelope('"error":{"code":-1,"message":"x"},"method":"tools/call","params":%s' % PARAMS), mirrored(), Refused(400, -32600)),
    Case("_meta protocolVer\u017fion (U+017F) after protocolVersion",
         body(raw=envelope('"method":"tools/call","params":{"name":"%s","arguments":%s,"_meta":%s}'
                           % (TOOL, ARGS_JSON, meta_with('"io.modelcontextprotocol/protocolVer%sion": "2025-06-18"' % LONG_S)))),
         mirrored(), FOLDED),
    Case("_meta IO.MODELCONTEXTPROTOCOL/PROTOCOLVERSION after protocolVersion",
         body(raw=envelope('"method":"tools/call","params":{"name":"%s","arguments":%s,"_meta":%s}'
                           % (TOOL, ARGS_JSON, meta_with('"IO.MODELCONTEXTPROTOCOL/PROTOCOLVERSION": "2025-06-18"')))),
         mirrored(), FOLDED),
    # Go would run the tool on the other arguments (and the audit input_hash would
    # describe arguments the server never saw).
    Case("argument\u017f after arguments",
         envelope('"method":"tools/call","params":{"name":"%s","arguments":%s,"argument%s":{"account_id":"acc-002"},"_meta":%s}' % (TOOL, ARGS_JSON, LONG_S, META_JSON)),
         mirrored(), FOLDED),
    Case("ID after id", envelope('"method":"tools/call","params":%s,"ID":2' % PARAMS), mirrored(), FOLDED),
    Case("j\u017fonrpc 1.0 after jsonrpc", envelope('"method":"tools/call","params":%s,"j%sonrpc":"1.0"' % (PARAMS, LONG_S)), mirrored(), FOLDED),
    # Folding is about the keys the gateway reads, at the level it reads them: these
    # stay other members and must still be forwarded.
    Case("unrelated key with U+017F in params", envelope('"method":"tools/call","params":{"name":"%s","%something":1,"arguments":%s,"_meta":%s}' % (TOOL, LONG_S, ARGS_JSON, META_JSON)),
         mirrored(), Labelled(TOOL)),
    Case("Name inside arguments", envelope('"method":"tools/call","params":{"name":"%s","arguments":{"account_id":"acc-001","Name":"%s"},"_meta":%s}' % (TOOL, OTHER, META_JSON)),
         mirrored(), Labelled(TOOL)),
]


def decode(value: str) -> str:
    if value.startswith("=?base64?") and value.endswith("?="):
        return base64.b64decode(value[9:-2]).decode()
    return value


def send(port: int, case: Case) -> Response:
    headers = case.headers + [bearer(AGENT)]
    if case.transport == "h2":
        chunks = [case.body[i : i + 16384] for i in range(0, len(case.body), 16384)]
        return request_h2(port, "POST", "/mcp", [(k, v.decode() if isinstance(v, bytes) else v) for k, v in headers], chunks)
    if case.transport == "h1-bytes":
        return request(port, "POST", "/mcp", None, headers, chunks=[bytes([b]) for b in case.body])
    return request(port, "POST", "/mcp", case.body, headers)


@dataclass
class Seen:
    """One case through the gateway in front of one oracle."""

    response: Response
    posts: list[dict[str, str]]
    dispatches: list[Dispatch]

    def error_code(self) -> int | None:
        try:
            return json.loads(self.response.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    def answer(self) -> str:
        code = self.error_code()
        return f"{self.response.status}" + ("" if code is None else f" {code}")


def problems(case: Case, seen: dict[str, Seen]) -> list[str]:
    """Everything about this case that differs from its defined outcome, per oracle."""
    found = []
    for oracle, s in seen.items():
        def problem(text: str) -> None:
            found.append(f"{oracle}: {text}")

        if isinstance(case.expect, Refused):
            if s.response.status != case.expect.status:
                problem(f"gateway answered {s.response.status}, not {case.expect.status}: {s.response.body[:200]!r}")
            elif case.expect.code is not None and s.error_code() != case.expect.code:
                problem(f"JSON-RPC code {s.error_code()}, not {case.expect.code}: {s.response.body[:200]!r}")
            if s.posts or s.dispatches:
                problem(f"reached the server ({len(s.posts)} POSTs) and it dispatched {[str(d) for d in s.dispatches]}")
            continue

        expect = case.expect
        if len(s.posts) != 1:
            problem(f"{len(s.posts)} POSTs reached the server (gateway answered {s.answer()}: {s.response.body[:200]!r})")
            continue
        headers = s.posts[0]
        # Only the gateway's labels and the verified identity, never a client's copy.
        labels = {
            "x-mcp-method": decode(headers.get("x-mcp-method", "")),
            "x-mcp-server-id": headers.get("x-mcp-server-id"),
            "x-agent-id": headers.get("x-agent-id"),
        }
        if labels != {"x-mcp-method": expect.method, "x-mcp-server-id": "financial-data", "x-agent-id": AGENT}:
            problem(f"labels {labels}")
        if "x-user-id" in headers or "authorization" in headers:
            problem("the client's x-user-id or token reached the server")
        label = decode(headers["x-mcp-tool-name"]) if "x-mcp-tool-name" in headers else None
        if label != expect.tool:
            problem(f"tool label {label!r}, not {expect.tool!r}")
        if oracle in expect.refused_by:
            if s.dispatches or (s.response.status == 200 and s.error_code() is None):
                problem(f"expected to refuse the body; answered {s.answer()}, dispatched {[str(d) for d in s.dispatches]}")
            continue
        # What the server acted on is what authz and ratelimit decided on.
        if [(d.method, d.name) for d in s.dispatches] != [(expect.method, expect.tool)]:
            problem(f"dispatched {[str(d) for d in s.dispatches]}, labelled {expect.method} {expect.tool or ''}".rstrip())
        elif s.response.status != 200:
            problem(f"answered {s.answer()}")
        version = headers.get("x-mcp-protocol-version")
        read = {d.protocol_version for d in s.dispatches} - {None}
        if version and read and read != {version}:
            problem(f"read protocol version {sorted(read)}, labelled {version}")
    return found


def expectation(case: Case) -> str:
    if isinstance(case.expect, Refused):
        return f"refused {case.expect.status}" + ("" if case.expect.code is None else f" {case.expect.code}")
    text = case.expect.method + (f" {case.expect.tool}" if case.expect.tool else "")
    if case.expect.refused_by:
        text += f" ({', '.join(case.expect.refused_by)} refuse{'s' if len(case.expect.refused_by) == 1 else ''})"
    return text


def cell(s: Seen) -> str:
    """What one oracle did with the case: not reached, dispatched, or refused; a
    dispatch other than the gateway's label in bold."""
    if not s.posts:
        return "·"
    if not s.dispatches:
        return f"refused {s.answer()}"
    headers = s.posts[0]
    label = (decode(headers.get("x-mcp-method", "")), decode(headers["x-mcp-tool-name"]) if "x-mcp-tool-name" in headers else None)
    parts = []
    for d in s.dispatches:
        text = str(d) if (d.method, d.name) == label else f"**{d}**"
        version = headers.get("x-mcp-protocol-version")
        if d.protocol_version and version and d.protocol_version != version:
            text += f" **(read as {d.protocol_version})**"
        parts.append(text)
    return ", ".join(parts)


def gateway_cell(seen: dict[str, Seen]) -> str:
    answers = []
    for s in seen.values():
        if s.posts:
            headers = s.posts[0]
            tool = headers.get("x-mcp-tool-name")
            text = "forwarded " + decode(headers.get("x-mcp-method", "?")) + (f" {decode(tool)}" if tool else "")
        else:
            text = f"refused {s.answer()}"
        if text not in answers:
            answers.append(text)
    return " / ".join(answers)


def table(rows: list[tuple[Case, dict[str, Seen], list[str]]]) -> str:
    failed = [case.name for case, _, found in rows if found]
    lines = [
        f"{len(rows)} cases ({sum(isinstance(c.expect, Refused) for c, _, _ in rows)} to be refused, "
        f"{sum(isinstance(c.expect, Labelled) for c, _, _ in rows)} to be forwarded), "
        f"{len(rows) - len(failed)} with their defined outcome, {len(failed)} without.",
        "",
        "Oracle cells: what that server dispatched (`·`: nothing reached it; **bold**: not what the gateway labelled, "
        "so not what authz and ratelimit decided on).",
        "",
        "| case | expected | gateway | " + " | ".join(ORACLES) + " | outcome |",
        "|---|---|---|" + "---|" * len(ORACLES) + "---|",
    ]
    for case, seen, found in rows:
        name = case.name.replace("|", "\\|") + ("" if case.transport == "h1" else f" ({case.transport})")
        oracles = " | ".join(cell(seen[o]) if o in seen else "" for o in ORACLES)
        lines.append(f"| {name} | {expectation(case)} | {gateway_cell(seen)} | {oracles} | {'FAIL' if found else 'ok'} |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Collects each case's observations; writes the table when the module ends."""
    rows: list[tuple[Case, dict[str, Seen], list[str]]] = []
    yield rows
    text = table(sorted(rows, key=lambda row: CASES.index(row[0])))
    out = tmp_path_factory.mktemp("differential-table") / "differential.md"
    out.write_text(text)
    if os.environ.get("DIFFERENTIAL_TABLE"):
        Path(os.environ["DIFFERENTIAL_TABLE"]).write_text(text)
    print(f"\ndifferential table: {out}\n{text}")


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    """The one-server gateway (harness/single.py, the whole chain) in front of each oracle, sharing one
    authz-service and one ratelimit-service: yields {oracle name: (Envoy port, Oracle)}.
    AGENT has no limit in the one-server limits (harness/single.py), so the cases never meet a 429."""
    logs = tmp_path_factory.mktemp("differential")
    policy = yaml.safe_load(single.policy().read_text())
    policy["servers"]["financial-data"]["tools"]["données"] = []
    policy_path = logs / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy, allow_unicode=True))
    started = []
    try:
        oracles = start_oracles(logs, build_go_oracle(logs))
        started.extend(oracles.values())
        authz = Authz(logs, policy=policy_path)
        started.append(authz)
        ratelimit = Ratelimit(logs)
        started.append(ratelimit)
        ports = {}
        for name, oracle in oracles.items():
            envoy, port = start_gateway(logs, {MCP_CLUSTER: oracle.port, **authz.upstreams(), **ratelimit.upstreams()})
            started.append(envoy)
            ports[name] = (port, oracle)
        yield ports
    finally:
        for process in reversed(started):
            process.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_has_its_defined_outcome(gateways, results, case):
    seen = {}
    for name, (port, oracle) in gateways.items():
        posts_before, dispatched_before = len(oracle.posts()), len(oracle.dispatches())
        response = send(port, case)
        seen[name] = Seen(response, oracle.posts()[posts_before:], oracle.dispatches()[dispatched_before:])
    found = problems(case, seen)
    results.append((case, seen, found))
    assert found == [], "\n".join(found)


def test_every_oracle_reads_keys_as_its_stack_does(gateways):
    """The oracles are what the differential is worth: checked directly (no gateway)
    on one body, Go must act on the case-folded key and the SDKs must not."""
    folded = envelope('"method":"tools/call","params":{"name":"%s","Name":"%s","arguments":%s,"_meta":%s}'
                      % (TOOL, OTHER, ARGS_JSON, META_JSON))
    expected = {"python": TOOL, "typescript": TOOL, "go": OTHER}
    for name, (_, oracle) in gateways.items():
        before = len(oracle.dispatches())
        response = request(oracle.port, "POST", "/mcp", folded, mirrored())
        assert response.status == 200, (name, response.body[:300])
        assert [d.name for d in oracle.dispatches()[before:]] == [expected[name]], name
