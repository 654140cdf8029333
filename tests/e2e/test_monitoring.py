"""The shipped Prometheus alert rules and Grafana dashboard (envoy/monitoring/):
checked by promtool, and every metric they query is one the filter really exports
(test_audit.py scrapes a live Envoy for that)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml
from harness import ROOT

MONITORING = ROOT / "envoy" / "monitoring"
RULES = MONITORING / "mcp-alerts.yaml"
RULE_TESTS = MONITORING / "mcp-alerts.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Exists in Envoy's stats only once the filter saw drift (its first count creates the
# series): test_schema_drift.py checks it live, with the labels the rule reads.
DRIFT_METRIC = "mcp_schema_drift_total"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed; run scripts/setup.sh"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=MONITORING)


def test_alert_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_alert_rules_fire_on_their_signals():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]}
    assert alerts == tested == {
        "MCPToolCallErrorRateHigh", "MCPNegotiationFailureSpike", "MCPAgentLooping", "MCPToolLatencyHigh", "MCPSchemaDrift",
    }


def test_dashboard_covers_the_on_call_signals():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mcp-gateway"
    exprs = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    for metric in (
        "mcp_tool_calls_total",
        "mcp_tool_call_duration_ms_bucket",
        "mcp_negotiation_failures_total",
        "mcp_session_duration_ms_bucket",
        "mcp_session_tool_calls_bucket",
        "mcp_requests_total",
        DRIFT_METRIC,
    ):
        assert metric in exprs, metric
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def stats_tags() -> set[str]:
    """The label names the bootstrap (envoy/fleet.yaml, in every rendered config)
    extracts from the filter's stat names."""
    bootstrap = yaml.safe_load((ROOT / "envoy" / "fleet.yaml").read_text())
    return {tag["tag_name"] for tag in bootstrap["stats_config"]["stats_tags"]}


def queried_names() -> set[str]:
    texts = [RULES.read_text(), DASHBOARD.read_text()]
    return {name for text in texts for name in re.findall(r"\bmcp_[a-z_]+", text)}


def queried_metrics() -> set[str]:
    """Every filter metric name the rules and the dashboard query that any gateway
    exports (test_audit.py scrapes one for them); not DRIFT_METRIC (see there)."""
    return queried_names() - stats_tags() - {DRIFT_METRIC}


def test_queried_labels_are_extracted_by_envoy():
    labels = {name for name in queried_names() if not name.endswith(("_total", "_bucket", "_count", "_sum"))}
    assert labels and labels <= stats_tags(), labels - stats_tags()


# Canary releases (issue 17): mcp-canary-alerts.yaml compares the releases of a server in
# PromQL (as `mcp-registry canary watch` does) and watches the watcher.
CANARY_RULES = MONITORING / "mcp-canary-alerts.yaml"
CANARY_RULE_TESTS = MONITORING / "mcp-canary-alerts.test.yaml"
# Served by the watcher (--metrics-addr), not by Envoy: test_canary.py scrapes a live
# watcher for every one of them.
WATCHER_METRICS = {
    "mcp_canary_rollbacks_total",
    "mcp_canary_promotions_total",
    "mcp_canary_weight",
    "mcp_canary_last_evaluation_timestamp_seconds",
    "mcp_canary_no_data",
}
# Recorded by the rendered monitoring/mcp-servers.rules.yaml (one per release, with mcp_track).
RENDERED_INFO = {"mcp_server_info", "mcp_track"}


def test_canary_rules_pass_promtool_check():
    result = promtool("check", "rules", CANARY_RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_canary_alerts_fire_on_their_signals():
    result = promtool("test", "rules", CANARY_RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [rule for group in yaml.safe_load(CANARY_RULES.read_text())["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    tested = {case["alertname"] for test in yaml.safe_load(CANARY_RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]}
    assert alerts == tested == {"MCPCanaryWorseThanStable", "MCPCanaryRolledBack", "MCPCanaryWatcherStale", "MCPCanaryNoData"}
    # One MCPCanaryWorseThanStable per signal the watcher compares.
    signals = {rule["labels"]["mcp_signal"] for rule in rules if rule.get("alert") == "MCPCanaryWorseThanStable"}
    assert signals == {"tool_call_error_ratio", "negotiation_failure_ratio"}


def test_canary_rules_query_what_envoy_the_watcher_and_render_provide():
    # Names in the expressions (recorded names are mcp:..., not matched; comments skipped).
    exprs = " ".join(rule["expr"] for group in yaml.safe_load(CANARY_RULES.read_text())["groups"] for rule in group["rules"])
    names = set(re.findall(r"\bmcp_[a-z_]*[a-z]", exprs))
    # mcp_signal: the watcher's label on its rollbacks.
    gateway = names - WATCHER_METRICS - RENDERED_INFO - {"mcp_signal"}
    # The gateway's series the rules read are the ones the watcher reads, by release,
    # and every label they use is one Envoy extracts.
    assert gateway - stats_tags() == {"mcp_tool_calls_total", "mcp_requests_total", "mcp_negotiation_failures_total"}
    assert "mcp_server_version" in gateway & stats_tags()
    assert names & WATCHER_METRICS == WATCHER_METRICS - {"mcp_canary_promotions_total"}
