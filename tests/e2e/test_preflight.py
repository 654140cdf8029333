"""Issue 17, preflight: `mcp-registry preflight` runs the seed's pre-production
checklist against live servers through the whole chain (real Envoy with the wasm
filter, authz-service, ratelimit-service, all on what `mcp-registry render` wrote from
tests/fixtures/issue17/preflight/fleet). The servers are the official Python SDK
catalog server (harness/catalog_server.py), healthy or deliberately broken:

- pf-py: healthy, claims both eras (manifest `protocol_versions`): every step passes
  (the load step shortened to 3 s), exit 0, the JSON and Markdown reports written;
- pf-ts: healthy, legacy only (official TypeScript SDK v1 server): it claims 2025-11-25
  by its `initialize` answer, and every step passes in that era;
- pf-drift: advertises `lookup` with another schema than registered: step 1 fails;
- pf-extra: advertises a tool its manifest does not register: the gateway hides it
  from every agent, so step 1 sees it only in the gateway's drift counter (`--admin`);
- pf-fail: every tool call answers `isError: true`: steps 4 and 6 fail;
- pf-nolimits: its manifest has no `gateway.rate_limits`: step 3 fails;
- pf-refuse: its `server/discover` claims 2025-11-25 but it refuses `initialize`: step
  5 fails (step 1 skips that era rather than failing for the same cause);
- pf-py again from a copy of the fleet directory whose manifest names no owner: step 8
  fails, the live steps still pass;
- pf-py with SIGTERM while the rotation check waits: the next key is removed from the
  JWKS file (a key added meanwhile kept), exit 143.

Credentials come from a preflight.yaml written here: tokens minted with the harness's
signing key (the one the authz-service trusts), the rotation check publishing a new
key into the authz-service's own JWKS file (and restoring it), the audit sink the
gateway's audit file."""

from __future__ import annotations

import copy
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.authz import ISSUER, KID, RESOURCE, signing_key
from harness.catalog_servers import manifest_catalog, start_servers
from harness.fleet import Fleet
from harness.procs import ROOT
from harness.registry import REGISTRY

FIXTURES = ROOT / "tests" / "fixtures" / "issue17" / "preflight" / "fleet"
STEPS = ["manifest", "schema", "auth", "rate_limit", "audit", "negotiation", "load", "runbook", "owner"]
LONG_RUNS = ["--skip", "load,auth"]


def drifted(catalog: dict) -> dict:
    """The catalog with lookup's `limit` maximum raised from 50 to 500."""
    changed = copy.deepcopy(catalog)
    (lookup,) = [tool for tool in changed["tools"] if tool["name"] == "lookup"]
    lookup["inputSchema"]["properties"]["limit"]["maximum"] = 500
    return changed


SERVERS = {
    "pf-py": {"kind": "py", "catalog": manifest_catalog("pf-py", source=FIXTURES)},
    "pf-drift": {"kind": "py", "catalog": drifted(manifest_catalog("pf-drift", source=FIXTURES))},
    "pf-nolimits": {"kind": "py", "catalog": manifest_catalog("pf-nolimits", source=FIXTURES)},
    "pf-extra": {
        "kind": "py",
        "catalog": manifest_catalog("pf-extra", source=FIXTURES, extra_tools=[
            {"name": "export_all", "description": "not registered", "inputSchema": {"type": "object"}}]),
    },
    "pf-fail": {
        "kind": "py",
        "catalog": manifest_catalog("pf-fail", source=FIXTURES),
        "flags": ("--fail-tools",),
    },
    "pf-ts": {"kind": "ts", "catalog": manifest_catalog("pf-ts", source=FIXTURES)},
    "pf-refuse": {
        "kind": "py",
        "catalog": manifest_catalog("pf-refuse", source=FIXTURES),
        "flags": ("--claim-versions", "2026-07-28,2025-11-25", "--refuse-initialize"),
    },
}


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    logs = tmp_path_factory.mktemp("preflight")
    servers = start_servers(logs, SERVERS)
    try:
        fleet = Fleet(logs, {name: server.port for name, server in servers.items()}, source=FIXTURES)
        try:
            yield fleet, servers, logs
        finally:
            fleet.stop()
    finally:
        for server in servers.values():
            server.stop()


def write_config(fleet: Fleet, logs: Path, audit: bool = True, rotation: bool = True) -> Path:
    """preflight.yaml: tokens minted with the harness's signing key; rotation into the
    authz-service's JWKS file; the gateway's audit file."""
    (logs / "signing.pem").write_bytes(pem(signing_key()))
    # One next key per gateway: the authz-service keeps a key it fetched by its kid.
    if not (logs / "next.pem").exists():
        (logs / "next.pem").write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    config = {
        "mint": {"key_file": "signing.pem", "kid": KID, "issuer": ISSUER, "audience": RESOURCE, "ttl": "300s"},
        "load": {"max_in_flight": 32, "request_timeout": "5s", "direct_samples": True},
    }
    if rotation:
        jwks = logs / f"authz-{fleet.authz.grpc_port}-jwks.json"
        config["rotation"] = {"next_key_file": "next.pem", "next_kid": "preflight-next", "publish": {"jwks_file": str(jwks)}}
    if audit:
        config["audit"] = {"file": str(fleet.audit_path), "wait": "10s"}
    path = logs / f"preflight-{'a' if audit else 'n'}{'r' if rotation else 'n'}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def preflight(fleet: Fleet, logs: Path, server: str, *extra: str, manifests: Path | None = None, config: Path | None = None):
    """Runs the real binary; (exit status, stdout, stderr, JSON report, Markdown report)."""
    report_json, report_md = logs / f"{server}-report.json", logs / f"{server}-report.md"
    for report in (report_json, report_md):
        report.unlink(missing_ok=True)
    argv = [
        str(REGISTRY), "preflight", str(manifests or fleet.manifests), "--server", server,
        "--gateway", f"http://127.0.0.1:{fleet.port}", "--config", str(config or write_config(fleet, logs)),
        "--rendered", str(fleet.out), "--admin", f"http://127.0.0.1:{fleet.envoy.admin_port}", "--report-json", str(report_json), "--report-md", str(report_md),
        "--load-duration", "3s", "--allow-loopback-endpoints", *extra,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    parsed = json.loads(report_json.read_text()) if report_json.exists() else None
    markdown = report_md.read_text() if report_md.exists() else None
    return done.returncode, done.stdout, done.stderr, parsed, markdown


def statuses(report: dict) -> dict[str, str]:
    return {step["name"]: step["status"] for step in report["steps"]}


def step(report: dict, name: str) -> dict:
    (found,) = [s for s in report["steps"] if s["name"] == name]
    return found


def test_a_healthy_server_passes_every_step(gateway):
    fleet, servers, logs = gateway
    code, out, err, report, markdown = preflight(fleet, logs, "pf-py")
    assert code == 0, (out, err)
    assert statuses(report) == {name: "pass" for name in STEPS}, out
    lines = out.splitlines()
    assert [line.split()[:3] for line in lines[:9]] == [["PASS", str(n), name] for n, name in enumerate(STEPS)], out
    assert lines[9].startswith("preflight pf-py 1.4.0: pass"), out
    assert report["preflight"] == 1 and report["result"] == "pass" and report["server_version"] == "1.4.0"
    # Both claimed eras listed and connected with the SDK.
    schema = step(report, "schema")
    assert {c["name"] for c in schema["checks"] if c["status"] == "pass"} == {"2025-11-25", "2026-07-28", "drift"}, schema
    assert {c["name"] for c in step(report, "negotiation")["checks"]} == {"2025-11-25", "2026-07-28", "gateway"}
    # The gateway's own counters agree (--admin).
    assert {c["name"]: c["status"] for c in schema["checks"]}["drift"] == "pass"
    assert {c["name"]: c["status"] for c in step(report, "negotiation")["checks"]}["gateway"] == "pass"
    # Auth: every sub-check ran, rotation included.
    auth = {c["name"]: c for c in step(report, "auth")["checks"]}
    assert {n: c["status"] for n, c in auth.items()} == {
        "no_token": "pass", "expired": "pass", "missing_scope": "pass", "rotation": "pass"}, auth
    assert "mcp.server.pf-py:tools.read mcp.server.pf-py:tools.write" in auth["missing_scope"]["detail"]
    # The JWKS is back as it was.
    jwks = json.loads((logs / f"authz-{fleet.authz.grpc_port}-jwks.json").read_text())
    assert [key["kid"] for key in jwks["keys"]] == [KID]
    # The 429 came for the rate-limit agent, over its 3/second.
    assert re.search(r"429 after [4-7] calls, Retry-After \d+, -31020", step(report, "rate_limit")["reason"]), report
    # The audit record of that exact call, by id.
    record = step(report, "audit")["data"]["record"]
    assert record["jsonrpc_id"].startswith("preflight-") and record["agent_id"] == "preflight-schema"
    assert record["server_id"] == "pf-py" and record["tool_name"] == "lookup" and record["decision"] == "allowed"
    # Load: 10 calls/s (60/minute x 10) for 3 s, all sent and answered.
    load = step(report, "load")["data"]["load"]
    assert load["scheduled"] == 30 and load["sent"] == 30 and load["errors"] == 0, load
    assert 0 < load["latency_ms"]["p50"] <= load["latency_ms"]["p99"]
    # The gateway's added latency by paired direct samples (1 in 10 straight to the server).
    added = load["gateway_added_ms"]
    assert added["method"].startswith("paired direct samples") and added["direct_samples"] == 3, added
    assert added["p50"] is not None and "upstream-service-time" in added["upper_bound"]["method"]
    dispatched = [d for d in servers["pf-py"].dispatches() if d["name"] == "lookup"]
    assert len(dispatched) >= 30 + 1, len(dispatched)
    # The Markdown page: one row per step.
    rows = [line for line in markdown.splitlines() if re.match(r"^\| \d \| \w+ \| (PASS|FAIL|SKIP) \|", line)]
    assert [row.split(" | ")[1] for row in rows] == STEPS, markdown
    assert all(" | PASS | " in row for row in rows)
    assert "| p99 (ms) |" in markdown
    # No token in any output.
    assert "eyJ" not in out + err + json.dumps(report) + markdown


def test_a_legacy_only_server_passes_in_the_era_it_claims(gateway):
    fleet, servers, logs = gateway
    code, out, err, report, _ = preflight(fleet, logs, "pf-ts")
    assert code == 0, (out, err)
    assert statuses(report) == {name: "pass" for name in STEPS}, out
    schema = step(report, "schema")
    assert schema["data"]["claimed"] == "2025-11-25 (initialize)", schema
    assert [c["name"] for c in step(report, "negotiation")["checks"]] == ["2025-11-25", "gateway"]
    assert step(report, "audit")["data"]["record"]["protocol_version"] == "2025-11-25"
    # The next key is trusted since the first run: the rotation cannot be observed again.
    (rotation,) = [c for c in step(report, "auth")["checks"] if c["name"] == "rotation"]
    assert rotation["status"] in ("pass", "skip"), rotation
    assert len([d for d in servers["pf-ts"].dispatches() if d["name"] == "lookup"]) >= 30


def test_tokens_from_a_command(gateway, tmp_path):
    """identities from token_command (argv, no shell) instead of minting: a script that
    signs a token for the agent and scopes it is given with the key the authz-service
    trusts."""
    fleet, _, logs = gateway
    write_config(fleet, logs)  # writes signing.pem
    script = tmp_path / "issue_token.py"  # not token.py: the stdlib has a `token` module
    script.write_text(
        "import sys, time, jwt\n"
        f"key = open({str(logs / 'signing.pem')!r}).read()\n"
        "now = int(time.time())\n"
        f"claims = {{'iss': {ISSUER!r}, 'aud': {RESOURCE!r}, 'iat': now, 'exp': now + 600,\n"
        "          'sub': sys.argv[1], 'azp': sys.argv[1], 'scope': sys.argv[2]}\n"
        f"print(jwt.encode(claims, key, algorithm='RS256', headers={{'kid': {KID!r}}}))\n"
    )
    scopes = "mcp.server.pf-py:tools.read mcp.server.pf-py:tools.write"
    config = tmp_path / "preflight.yaml"
    config.write_text(yaml.safe_dump({
        "identities": {"schema": {"token_command": [sys.executable, str(script), "cmd-agent", scopes]}},
        "audit": {"file": str(fleet.audit_path), "wait": "10s"},
    }))
    code, out, err, report, _ = preflight(
        fleet, logs, "pf-py", "--skip", "load,rate_limit,auth", config=config)
    assert code == 0, (out, err)
    assert statuses(report)["schema"] == "pass" and statuses(report)["negotiation"] == "pass", out
    assert step(report, "audit")["data"]["record"]["agent_id"] == "cmd-agent"
    # A token command that fails is a failure, not a skip.
    config.write_text(yaml.safe_dump({"identities": {"schema": {"token_command": ["false"]}}}))
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", "--skip", "load,rate_limit,auth", config=config)
    assert code == 1, (out, err)
    assert step(report, "schema")["reason"] == "identity: the schema identity has no token: false exited with exit status: 1"


def test_a_schema_that_differs_from_the_registry_fails_step_1(gateway):
    fleet, _, logs = gateway
    code, out, err, report, _ = preflight(fleet, logs, "pf-drift", *LONG_RUNS)
    assert code == 1, (out, err)
    assert statuses(report)["schema"] == "fail", out
    assert ("lookup: inputSchema differs from schemas/lookup_v1.json at /properties/limit/maximum "
            "(500, registered 50)") in step(report, "schema")["reason"]
    assert [n for n, s in statuses(report).items() if s == "fail"] == ["schema"], out
    assert re.search(r"^FAIL 1 schema .*inputSchema differs", out, re.M), out


def test_an_unregistered_tool_fails_step_1_by_the_gateway_s_drift_counter(gateway):
    fleet, _, logs = gateway
    code, out, err, report, _ = preflight(fleet, logs, "pf-extra", *LONG_RUNS)
    assert code == 1, (out, err)
    assert [n for n, s in statuses(report).items() if s == "fail"] == ["schema"], out
    checks = {c["name"]: c for c in step(report, "schema")["checks"]}
    # What the schema identity was shown matches the registry; the counter tells.
    assert checks["2026-07-28"]["status"] == "pass" and checks["2025-11-25"]["status"] == "pass"
    assert checks["drift"]["status"] == "fail", checks
    assert "(mcp_schema_drift_total: extra +" in checks["drift"]["detail"], checks["drift"]


def test_a_server_whose_tool_calls_fail_fails_the_audit_and_load_steps(gateway):
    fleet, _, logs = gateway
    code, out, err, report, _ = preflight(fleet, logs, "pf-fail", "--skip", "auth")
    assert code == 1, (out, err)
    assert [n for n, s in statuses(report).items() if s == "fail"] == ["audit", "load"], out
    audit = {c["name"]: c for c in step(report, "audit")["checks"]}
    assert audit["call"]["detail"] == "lookup answered a result with isError: true"
    # The record is still found, and says so.
    assert audit["record"]["detail"].startswith("audit record found but output_status is \"error\""), audit
    load = step(report, "load")["data"]["load"]
    assert load["errors_by_kind"]["is_error"] == 30 and load["succeeded"] == 0, load
    assert step(report, "load")["reason"].startswith("error_rate: 30 of 30 calls failed (100.00%; at most 1.00%)")
    latency = {c["name"]: c for c in step(report, "load")["checks"]}["latency"]
    assert latency["status"] == "skip" and latency["detail"] == "no call succeeded, so none was timed"


def test_a_server_missing_from_the_limits_fails_step_3(gateway):
    fleet, _, logs = gateway
    code, out, err, report, _ = preflight(fleet, logs, "pf-nolimits", *LONG_RUNS)
    assert code == 1, (out, err)
    assert [n for n, s in statuses(report).items() if s == "fail"] == ["rate_limit"], out
    checks = {c["name"]: c for c in step(report, "rate_limit")["checks"]}
    assert checks["rendered"]["detail"] == (
        'limits/limits.yaml has no descriptor for server_id "pf-nolimits" (the manifest has no gateway.rate_limits)')
    assert checks["live"]["detail"] == (
        'no rate limit applies to agent "preflight-ratelimit" calling lookup (gateway.rate_limits)')


def test_a_manifest_without_owner_fails_step_8_and_the_live_steps_still_run(gateway, tmp_path):
    fleet, _, logs = gateway
    manifests = tmp_path / "manifests"
    shutil.copytree(fleet.manifests, manifests)
    text = (manifests / "pf-py.yaml").read_text()
    (manifests / "pf-py.yaml").write_text(re.sub(r"^owner: .*\n", "", text, flags=re.M))
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", *LONG_RUNS, manifests=manifests)
    assert code == 1, (out, err)
    found = statuses(report)
    assert found["owner"] == "fail" and step(report, "owner")["reason"] == "owner: missing", out
    assert {n for n, s in found.items() if s == "pass"} == {
        "manifest", "schema", "rate_limit", "audit", "negotiation", "runbook"}, out
    assert "placeholders" in step(report, "manifest")["reason"]


def test_sigterm_while_waiting_for_the_rotation_removes_the_next_key(gateway, tmp_path):
    """SIGTERM while preflight waits for the gateway to accept the next key (sent as
    soon as its kid appears in the authz-service's JWKS file; the service refreshes for
    an unknown kid at most every 5 s, and the check's first call just did): preflight
    removes its key from the file, keeping a key another rotation added meanwhile, and
    exits 143. Failed on the old code: SIGTERM killed it with the key still trusted."""
    fleet, _, logs = gateway
    jwks_path = logs / f"authz-{fleet.authz.grpc_port}-jwks.json"
    original = jwks_path.read_text()
    (tmp_path / "signing.pem").write_bytes(pem(signing_key()))
    (tmp_path / "next.pem").write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    kid = f"preflight-sigterm-{uuid.uuid4().hex[:8]}"  # never fetched by the authz-service
    config = tmp_path / "preflight.yaml"
    config.write_text(yaml.safe_dump({
        "mint": {"key_file": "signing.pem", "kid": KID, "issuer": ISSUER, "audience": RESOURCE, "ttl": "300s"},
        "rotation": {"next_key_file": "next.pem", "next_kid": kid, "publish": {"jwks_file": str(jwks_path)},
                     "timeout": "600s"},
    }))
    argv = [
        str(REGISTRY), "preflight", str(fleet.manifests), "--server", "pf-py",
        "--gateway", f"http://127.0.0.1:{fleet.port}", "--config", str(config),
        "--skip", "schema,rate_limit,audit,negotiation,load,runbook,owner", "--allow-loopback-endpoints",
    ]
    other = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()))
    other.update(kid="rotated-in-meanwhile", alg="RS256", use="sig")
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while kid not in jwks_path.read_text():
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the next key was never published"
            time.sleep(0.01)
        # Another rotation lands meanwhile (written atomically, as preflight does).
        published = json.loads(jwks_path.read_text())
        published["keys"].append(other)
        (tmp_path / "jwks.tmp").write_text(json.dumps(published))
        (tmp_path / "jwks.tmp").replace(jwks_path)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 128 + signal.SIGTERM, (run.returncode, out, err)
        assert "preflight: stopped by SIGTERM, no report written" in err, err
        assert [key["kid"] for key in json.loads(jwks_path.read_text())["keys"]] == [KID, "rotated-in-meanwhile"]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        jwks_path.write_text(original)


ALL_BUT_RUNBOOK = ["--skip", "schema,auth,rate_limit,audit,negotiation,load,owner"]


def test_a_runbook_that_answers_404_fails_step_7(gateway, tmp_path):
    """The runbook at a path the gateway itself answers 404 (no server registered
    there); then at a path that answers 200 (Envoy's admin /ready)."""
    fleet, _, logs = gateway
    manifests = tmp_path / "manifests"
    shutil.copytree(fleet.manifests, manifests)
    text = (manifests / "pf-py.yaml").read_text()
    missing = f"http://127.0.0.1:{fleet.port}/runbooks/pf-py"
    (manifests / "pf-py.yaml").write_text(re.sub(r"^on_call_runbook: .*$", f"on_call_runbook: {missing}", text, flags=re.M))
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", *ALL_BUT_RUNBOOK, manifests=manifests)
    assert code == 1, (out, err)
    assert step(report, "runbook")["status"] == "fail"
    assert step(report, "runbook")["reason"] == "reachable: runbook URL answered 404", out
    ready = f"http://127.0.0.1:{fleet.envoy.admin_port}/ready"
    (manifests / "pf-py.yaml").write_text(re.sub(r"^on_call_runbook: .*$", f"on_call_runbook: {ready}", text, flags=re.M))
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", *ALL_BUT_RUNBOOK, manifests=manifests)
    assert code == 0, (out, err)
    assert step(report, "runbook")["reason"] == f"present: on_call_runbook: {ready}; reachable: answers 200", out


def test_a_manifest_that_does_not_validate_fails_step_0_and_runs_nothing_live(gateway, tmp_path):
    fleet, servers, logs = gateway
    manifests = tmp_path / "manifests"
    shutil.copytree(fleet.manifests, manifests)
    text = (manifests / "pf-py.yaml").read_text()
    (manifests / "pf-py.yaml").write_text(text.replace("schemas/search_v1.json", "schemas/search_v9.json"))
    before = len(servers["pf-py"].raw_posts())
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", manifests=manifests)
    assert code == 1, (out, err)
    found = statuses(report)
    assert found["manifest"] == "fail" and "render` would not route this server" in step(report, "manifest")["reason"]
    # The schema_ref problem is step 1's too; the live steps did not run.
    assert found["schema"] == "fail" and "search_v9.json does not exist" in step(report, "schema")["reason"], out
    assert {n for n, s in found.items() if s == "skip"} == {"auth", "rate_limit", "audit", "negotiation", "load", "runbook", "owner"}
    assert len(servers["pf-py"].raw_posts()) == before, "a live step reached the server"


def test_a_server_that_refuses_initialize_in_a_claimed_era_fails_step_5(gateway):
    fleet, _, logs = gateway
    code, out, err, report, _ = preflight(fleet, logs, "pf-refuse", *LONG_RUNS)
    assert code == 1, (out, err)
    assert [n for n, s in statuses(report).items() if s == "fail"] == ["negotiation"], out
    negotiation = {c["name"]: c for c in step(report, "negotiation")["checks"]}
    assert negotiation["2026-07-28"]["status"] == "pass"
    assert negotiation["2025-11-25"]["status"] == "fail"
    assert negotiation["2025-11-25"]["detail"].startswith(
        "claims 2025-11-25 (server/discover supportedVersions) but rmcp 3.11.0 could not connect"), negotiation
    # One cause fails one step: step 1 skips the era it cannot connect in.
    schema = {c["name"]: c for c in step(report, "schema")["checks"]}
    assert schema["2025-11-25"]["status"] == "skip" and "see step 5" in schema["2025-11-25"]["detail"]
    # The server's own refusal, passed through the gateway.
    assert "-32022" in schema["2025-11-25"]["detail"], schema


def test_strict_fails_on_any_skipped_check(gateway):
    """Without an audit sink step 4's point (the record) did not run: SKIP, not PASS.
    `--strict` fails on every skipped check, those inside passing steps included, and
    names them."""
    fleet, _, logs = gateway
    config = write_config(fleet, logs, audit=False, rotation=False)
    skip = ["--skip", "load,rate_limit,negotiation"]
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", *skip, config=config)
    assert code == 0, (out, err)
    audit = step(report, "audit")
    assert audit["status"] == "skip", audit
    assert audit["reason"].startswith("record: no audit sink") and audit["reason"].endswith("(passed: call)"), audit
    assert re.search(r"^SKIP 4 audit ", out, re.M), out
    # Step 2 passes on its expired and scope checks, naming the rotation it skipped.
    assert statuses(report)["auth"] == "pass" and step(report, "auth")["reason"].endswith("(skipped: rotation)")
    code, out, err, report, _ = preflight(fleet, logs, "pf-py", *skip, "--strict", config=config)
    assert code == 1, (out, err)
    assert report["result"] == "fail" and report["strict"] is True
    assert statuses(report)["auth"] == "pass"
    (summary,) = [line for line in out.splitlines() if line.startswith("preflight pf-py")]
    assert summary.endswith(
        "; --strict: skips fail: auth.rotation, rate_limit, audit.record, negotiation, load, owner.rotation)"), summary


def test_an_invalid_config_or_bad_flags_cannot_run(tmp_path):
    config = tmp_path / "preflight.yaml"
    config.write_text("mint: {key_file: nowhere.pem, kid: k}\naudit: {}\nidentities: {robot: {token_file: x}}\n")
    done = subprocess.run(
        [str(REGISTRY), "preflight", str(FIXTURES), "--server", "pf-py", "--gateway", "ftp://x",
         "--config", str(config), "--skip", "lunch", "--allow-loopback-endpoints"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert lines == [
        "preflight: --skip lunch: not a step (schema, auth, rate_limit, audit, negotiation, load, runbook, owner)",
        "preflight: --gateway ftp://x: not an http(s) URL",
        f"{config}: identities.robot: unknown identity (schema, no_scope, expired, ratelimit, load)",
        f"{config}: mint.key_file: cannot read nowhere.pem: No such file or directory (os error 2)",
        f"{config}: mint.issuer: missing",
        f"{config}: mint.audience: missing",
        f"{config}: audit: give file or command (exactly one)",
    ], done.stderr
    assert done.stdout == ""
