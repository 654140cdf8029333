"""The demo (demo/run_demo.py, what scripts/demo.sh runs after setup) end to end, as CI
would run it: no stdin, CI=true. It exits 0, each server of the example fleet is
served and audited under its own id, the refusals happen, the fourth server registered
midway serves through the same Envoy process, and nothing it started outlives it."""

from __future__ import annotations

import os
import re
import subprocess

from harness import ROOT, python

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

    # Stopped by PID on the way out (a PID is not reused this fast).
    try:
        os.kill(envoy_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, f"Envoy {envoy_pid} outlived the demo"
