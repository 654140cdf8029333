"""The demo (demo/run_demo.py, what scripts/demo.sh runs after setup) end to end, as CI
would run it: no stdin, CI=true. It exits 0, each server of the example fleet is
served and audited under its own id, the refusals happen, the fourth server registered
midway serves through the same Envoy process, `mcp-registry preflight` passes every step
on financial-data (or skips one saying why), a failing canary is rolled back by the
watcher and the calls after it all succeed on the stable release, and nothing it started
outlives it."""

from __future__ import annotations

import os
import re
import subprocess

from harness import ROOT, python

PREFLIGHT_STEPS = ["manifest", "schema", "auth", "rate_limit", "audit", "negotiation", "load", "runbook", "owner"]
SERVERS = {
    "financial-data": ("1.3.2", "get_account_balance"),
    "hr-directory": ("0.4.0", "find_employee"),
    "weather": ("2.0.1", "get_forecast"),
    "knowledge-base": ("1.0.0", "search_articles"),
}


def test_the_demo_runs_the_fleet_and_registers_a_fourth_server_live():
    done = subprocess.run(
        [python(), str(ROOT / "demo" / "run_demo.py")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CI": "true"},
        cwd=ROOT,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-5000:]}"
    # Not a terminal: no colour codes in CI logs.
    assert "\033[" not in out

    for server, (version, tool) in SERVERS.items():
        assert f"server saw  x-mcp-server-id: {server}, x-mcp-tool-name: {tool}, x-agent-id: ops-assistant" in out, server
        audit = f"audit       server_id={server} server_version={version} tool={tool} decision=allowed output_status=success"
        assert audit in out, server
        assert re.search(rf'metric      mcp_tool_calls_total\{{[^}}]*mcp_server="{server}",mcp_server_version="{version}",mcp_tool="{tool}"\}} 1\n', out), server
    assert "protocol 2025-11-25" in out  # weather's TypeScript v1 SDK, negotiated down

    assert "-> HTTP 401, JSON-RPC -31010" in out
    needed = "mcp.server.financial-data:tools.read mcp.server.financial-data:tools.write"
    assert f'WWW-Authenticate: Bearer error="insufficient_scope", scope="{needed}"' in out
    assert 'tools/call get_forecast -> HTTP 403, JSON-RPC -31011: forbidden: tool "get_forecast" is not registered' in out
    assert "POST /payments/mcp tools/call get_account_balance -> HTTP 404, JSON-RPC -31014" in out
    assert "the servers got 0 of these requests" in out
    assert "HTTP 429, Retry-After: 1" in out

    # Per-caller lists: transfer_funds needs financial-data's tools.write.
    shown = dict(re.findall(r"^  (\S+-agent|ops-assistant) .* tools/list  (.*)$", out, re.M))
    assert "transfer_funds" not in shown["ops-assistant"].split(", "), shown
    assert "transfer_funds" in shown["payments-agent"].split(", "), shown
    assert "ops-assistant's tools/list: hidden_entries=1" in out
    # Report mode: forwarded, and the audit record says where the arguments fail.
    assert "tools/call query_transactions {\"limit\": 0} -> HTTP 200 (forwarded: report mode)" in out
    assert re.search(r"decision=allowed schema_violation='/limit: .+'", out), out

    # The fourth server: unknown before render, then served by the Envoy that was there.
    live = out[out.index("Registering a fourth server live") :]
    assert "POST /knowledge-base/mcp tools/call search_articles -> HTTP 404, JSON-RPC -31014" in live
    assert "wrote <rendered>/envoy/routes.yaml" in live and "wrote <rendered>/policy.yaml" in live
    assert "wrote <rendered>/envoy/bootstrap.yaml" not in live
    assert "tools/list  search_articles, get_article" in live
    envoy_pid = int(re.search(r"Envoy :\d+ \(PID (\d+)\)", out).group(1))
    assert f"Envoy was not restarted: same PID {envoy_pid}," in live
    assert re.search(r"knowledge-base +allowed \d+", out)

    # Preflight on financial-data through the gateway: one line per step, in order, each
    # passing or skipped with its reason; every skipped check says why.
    checklist = out[out.index("Before traffic: mcp-registry preflight") : out.index("A canary that fails")]
    steps = re.findall(r"^    (PASS|FAIL|SKIP) (\d) (\w+) +(.*)$", checklist, re.M)
    assert [(int(n), name) for _, n, name, _ in steps] == list(enumerate(PREFLIGHT_STEPS)), checklist
    assert all(status in ("PASS", "SKIP") and reason.strip() for status, _, _, reason in steps), checklist
    assert re.search(r"^    preflight financial-data 1\.3\.2: pass \(\d passed, 0 failed, \d skipped\)$", checklist, re.M), checklist
    assert all(reason.strip() for reason in re.findall(r"^  skipped     \w+/\w+: (.*)$", checklist, re.M)), checklist
    assert "rotation    the next key's token: 401 before the JWKS changed, 200 " in checklist
    assert re.search(r"rate limit  preflight-ratelimit over 3/second: 429 after [4-7] calls, Retry-After 1, -31020", checklist), checklist
    assert re.search(r"load        40 calls at 20/s \(10x expected\) in 2 s: 0 errors", checklist), checklist
    assert "reports <logs>/preflight-financial-data.json (result: pass), <logs>/preflight-financial-data.md (9 PASS rows)" in checklist
    assert "eyJ" not in checklist  # no token printed

    # The failing canary: 50/50, rolled back by the watcher on its tool-call error ratio
    # within the window, rendered to 0, and every later call served by 1.3.2.
    rollout = out[out.index("A canary that fails") : out.index("Audit trail by server")]
    assert "rendered    weighted_clusters financial-data 1.3.2 / 1.4.0: 50/50" in rollout
    assert "watcher     wait: insufficient canary traffic: 0 of 5 tool calls" in rollout
    during = re.search(r"(\d+) calls at 50/50: (\d+) answered, (\d+) isError; rolled back ([\d.]+) s after the first", rollout)
    assert during and int(during.group(3)) >= 5 and float(during.group(4)) < 10, rollout
    assert ('watcher     {"event": "rollback", "server": "financial-data", "canary": "1.4.0", "stable": "1.3.2",'
            ' "signal": "tool_call_error_ratio", "canary_value": 1.0, "stable_value": 0.0, "weight": 0}') in rollout
    reason = re.search(r"reason: tool_call_error_ratio 1\.000 > stable 0\.000 \+ margin 0\.020 \((\d+) canary calls in 10s\)", rollout)
    assert reason and int(reason.group(1)) >= 5, rollout
    assert "rendered    weighted_clusters financial-data 1.3.2 / 1.4.0: 100/0; rollout/state.json: rolled_back, weight 0" in rollout
    assert "next 20 calls: 20 answered, 0 isError; 1.4.0's own log got 0 of them" in rollout
    # Per-release audit labels: the canary's calls all failed, the stable release's all succeeded.
    audited = dict(((v, o), int(n)) for v, o, n in re.findall(r"server_version=(\S+) output_status=(\w+): (\d+)", rollout))
    assert set(audited) == {("1.3.2", "success"), ("1.4.0", "error")}, rollout
    assert audited[("1.3.2", "success")] >= 20 + int(during.group(2)), rollout

    # Stopped by PID on the way out (a PID is not reused this fast): Envoy, the canary
    # release and the watcher.
    pids = {
        "Envoy": envoy_pid,
        "financial-data 1.4.0": int(re.search(r"1\.4\.0 is up on \S+ \(PID (\d+);", rollout).group(1)),
        "canary watch": int(re.search(r"--interval 1s  \(PID (\d+)\)", rollout).group(1)),
    }
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"{name} ({pid}) outlived the demo"
