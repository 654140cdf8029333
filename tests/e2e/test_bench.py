"""The benchmark (tests/bench/, BENCHMARKS.md) in a short run, so that the command
users rerun keeps working: every arm starts, every payload is answered 200 through
each of them, every figure is produced, and the report renders it. The figures of a
one-second run mean nothing and are not checked against any goal here."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from harness import ROOT, Process, free_port, python, wait_for_http

BENCH = ROOT / "tests" / "bench"
sys.path.insert(0, str(BENCH))

import bench_envoy  # noqa: E402


def test_the_upstream_answers_each_payload_as_an_mcp_server_would(logs):
    port = free_port()
    upstream = Process("upstream", [python(), str(BENCH / "fast_upstream.py"), str(port)], logs)
    try:
        wait_for_http(port, "/", process=upstream)
        answers = {}
        for name in bench_envoy.PAYLOADS:
            body, _, _ = bench_envoy.payload(name)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                answers[name] = (response.headers["content-type"], response.read().decode())
    finally:
        upstream.stop()
    for name in ("call-small", "call-16KiB"):
        assert answers[name][0] == "application/json"
        assert json.loads(answers[name][1])["result"]["isError"] is False
    kind, text = answers["tools-list"]
    assert kind == "application/json" and len(json.loads(text)["result"]["tools"]) == 8
    kind, text = answers["call-sse"]
    assert kind == "text/event-stream"
    events = [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]
    assert [e.get("method") for e in events] == ["notifications/progress", "notifications/progress", None]
    assert events[-1]["id"] == 1 and events[-1]["result"]["isError"] is False


def test_payloads_have_the_sizes_the_report_names():
    sizes = {name: len(bench_envoy.payload(name)[0]) for name in bench_envoy.PAYLOADS}
    assert sizes["call-small"] < 300
    assert 16 * 1024 <= sizes["call-16KiB"] < 17 * 1024
    for name in bench_envoy.PAYLOADS:
        body = json.loads(bench_envoy.payload(name)[0])
        assert body["jsonrpc"] == "2.0" and body["id"] == 1


# Slow: every arm and payload, one second each, several runs (about a minute).
@pytest.mark.slow
def test_a_short_run_measures_every_arm_and_payload(tmp_path):
    out = tmp_path / "envoy.json"
    run = subprocess.run(
        [python(), str(BENCH / "bench_envoy.py"), "--rounds", "1", "--seconds", "1", "--rates", "1000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    document = json.loads(out.read_text())
    results = document["results"]
    assert set(results) == set(bench_envoy.ARMS)
    for arm, figures in results.items():
        assert figures["envoy_rss_mib"][0] > 10, arm
        for payload in bench_envoy.PAYLOADS:
            measured = figures[payload]
            assert measured["envoy_cpu_us"][0] > 0 and measured["max_rps"][0] > 0, (arm, payload)
            latency = measured["latency_ms"]["1000"]
            assert 0 < latency["p50"][0] <= latency["p99"][0] <= latency["p99.9"][0], (arm, payload, latency)
            services = {key for key in measured if key.endswith("_cpu_us") and key != "envoy_cpu_us"}
            expected = {
                "chain-memory": {"authz_cpu_us", "ratelimit_cpu_us"},
                "chain-redis": {"authz_cpu_us", "ratelimit_cpu_us", "redis_cpu_us"},
            }.get(arm, set())
            assert services == expected, (arm, payload, services)
            if not expected:
                assert "ratelimit_decisions_per_request" not in measured, (arm, payload)
                continue
            # Every request of a chain arm made the authz-service work.
            assert measured["authz_cpu_us"][0] > 0, (arm, payload)
            # Envoy asks the rate limiter about tool calls only (the route's actions
            # need x-mcp-tool-name, so tools/list sends no descriptor), and every
            # answered tool call was decided by the service (on Redis in chain-redis:
            # a Redis failure would be an error, not a decision). Counted by Envoy,
            # not read from CPU times: Redis's or an idle service's CPU in a 1 s run
            # is below the 10 ms resolution of /proc, noise on a busy machine.
            decisions = measured["ratelimit_decisions_per_request"][0]
            if payload == "tools-list":
                assert decisions == 0, (arm, decisions)
            else:
                # At least one per answered call; a few more for calls cut in flight.
                assert 1 <= decisions < 1.5, (arm, payload, decisions)
                assert measured["ratelimit_cpu_us"][0] > 0, (arm, payload)

    report = subprocess.run(
        [python(), str(BENCH / "report.py"), "--print", "--envoy", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert report.returncode == 0, report.stderr
    for title in ("bare Envoy", "Envoy's native MCP filter", "full chain, ratelimit on Redis", "16 KiB tools/call"):
        assert title in report.stdout
    assert "vs bare / vs native" in report.stdout and "n/a" not in report.stdout


# The per-caller list and argument validation benchmark (tests/bench/bench_lists.py).
import bench_lists  # noqa: E402
import list_fleet  # noqa: E402


def test_the_upstream_lists_each_fleet_server_s_registered_tools_as_json_and_sse(logs):
    port = free_port()
    upstream = Process("upstream", [python(), str(BENCH / "fast_upstream.py"), str(port)], logs)
    try:
        wait_for_http(port, "/", process=upstream)
        answers = {}
        for name in ("list-10-json", "list-10-sse", "list-500-json", "list-500-sse", "call-small"):
            body, _, _, server = bench_lists.payload(name)
            # The path Envoy's route rewrites the server's path to (its endpoint's).
            path = f"/tools-{list_fleet.SERVERS[server]}"
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                answers[name] = (response.headers["content-type"], response.read().decode())
        # The existing benchmark's path still gets its 8-tool list.
        body, _, _ = bench_envoy.payload("tools-list")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert len(json.loads(response.read())["result"]["tools"]) == 8
    finally:
        upstream.stop()
    for count in (10, 500):
        for framing, kind in (("json", "application/json"), ("sse", "text/event-stream")):
            content_type, text = answers[f"list-{count}-{framing}"]
            assert content_type == kind
            tools = bench_lists.message(content_type, text)["result"]["tools"]
            # Exactly what the manifests register, so the drift check finds nothing.
            assert [t["name"] for t in tools] == list_fleet.tool_names(count)
            assert all(t["inputSchema"] == list_fleet.tool_schema(t["name"]) for t in tools)
    assert json.loads(answers["call-small"][1])["result"]["isError"] is False


def test_the_list_bench_calls_validate_against_their_registered_schemas_and_half_the_tools_are_hidden():
    import jsonschema

    for name, size in (("call-small", 300), ("call-16KiB", 17 * 1024)):
        body = json.loads(bench_lists.payload(name)[0])
        schema = list_fleet.tool_schema(body["params"]["name"])
        jsonschema.Draft202012Validator(schema).validate(body["params"]["arguments"])
        assert len(bench_lists.payload(name)[0]) < size
    assert len(bench_lists.payload("call-16KiB")[0]) >= 16 * 1024
    invalid = json.loads(bench_lists.payload("call-invalid")[0])["params"]
    assert not jsonschema.Draft202012Validator(list_fleet.tool_schema(invalid["name"])).is_valid(invalid["arguments"])
    # Realistic schemas (about 300 bytes each), and the token may call half the tools.
    assert all(250 <= len(json.dumps(t["inputSchema"], separators=(",", ":"))) <= 450 for t in list_fleet.advertised_tools(10))
    hidden = [list_fleet.needs_write(i) for i in range(500)]
    assert sum(hidden) == 250
    names = list_fleet.tool_names(500)
    assert len(set(names)) == 500
    assert not list_fleet.needs_write(names.index(list_fleet.SMALL_TOOL))
    assert not list_fleet.needs_write(names.index(list_fleet.BULK_TOOL))


# Slow: four arms, six payloads, one second each (about a minute). Each arm's Envoy is
# checked by the script before it is measured (lists whole or filtered and private,
# invalid arguments refused exactly where validation is on, no drift counted).
@pytest.mark.slow
def test_a_short_run_of_the_list_bench_measures_every_arm_and_payload(tmp_path):
    out = tmp_path / "lists.json"
    run = subprocess.run(
        [python(), str(BENCH / "bench_lists.py"), "--rounds", "1", "--seconds", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == set(bench_lists.ARMS)
    for arm, figures in results.items():
        assert set(figures) == set(bench_lists.PAYLOADS), arm
        for payload, measured in figures.items():
            assert measured["envoy_cpu_us"][0] > 0 and measured["max_rps"][0] > 0, (arm, payload)
            if arm == "bare":
                assert "authz_cpu_us" not in measured, (arm, payload)
                continue
            assert measured["authz_cpu_us"][0] > 0, (arm, payload)
            decisions = measured["ratelimit_decisions_per_request"][0]
            if payload.startswith("list-"):
                assert decisions == 0, (arm, payload, decisions)
            else:
                assert 1 <= decisions < 1.5, (arm, payload, decisions)
    for title in ("Envoy CPU per request", "authz-service CPU per decision", "Ratios of medians over chain-unfiltered"):
        assert title in run.stdout
