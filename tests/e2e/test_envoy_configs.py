"""Every Envoy config shipped in envoy/ is accepted by the real Envoy; bad filter
configs stop it with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from harness import ROOT, connection_manager, free_port, render_config, validate
from harness.envoy import filter_settings, wasm_plugin_configs

# Envoy bootstrap configs (envoy/*.yaml); monitoring files live in envoy/monitoring/.
# fleet.yaml is the fleet's bootstrap template: it reads the routes and clusters that
# `mcp-registry render` writes, so it is validated as rendered (test_fleet.py).
SHIPPED = sorted(p for p in (ROOT / "envoy").glob("*.yaml") if p.name != "fleet.yaml")


def test_there_are_configs():
    assert ROOT / "envoy" / "envoy.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_shipped_config_validates(path: Path):
    # Validation loads the wasm VM and runs the filter's on_configure, so the plugin
    # configuration inside the file is checked too.
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ({"server_id": ""}, 'server_id "" must be 1-128 characters'),
        ({"max_body_bytes": 0}, "max_body_bytes 0 must be between 1 and 67108864"),
        ({"mcp_paths": ["mcp"]}, 'mcp_paths entry "mcp" must be an absolute path'),
        ({"agent_identity": {"source": "x-agent-id-header"}}, "unknown variant `x-agent-id-header`"),
        ({"max_body_limit": 5}, "unknown field `max_body_limit`"),
    ],
)
def test_invalid_filter_config_stops_envoy(tmp_path, override, message):
    path = render_config(ROOT / "envoy" / "envoy.yaml", tmp_path, free_port(), free_port(), {}, override)
    result = validate(path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "invalid MCP filter plugin configuration" in output
    assert message in output


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_shipped_wasm_filters_are_safe(path: Path):
    """Every MCP filter we ship can set headers after the body (else requests hang) and
    reloads a dead VM instead of failing open or answering 503 forever."""
    config = yaml.safe_load(path.read_text())
    plugins = wasm_plugin_configs(config)
    assert plugins, f"{path} has no wasm filter"
    for plugin in plugins:
        assert plugin["allow_on_headers_stop_iteration"] is True
        assert plugin["failure_policy"] == "FAIL_RELOAD"
        assert "fail_open" not in plugin


STANDALONE = [ROOT / "envoy" / "envoy.yaml", ROOT / "envoy" / "compose" / "envoy.yaml"]


@pytest.mark.parametrize("path", STANDALONE, ids=[str(p.relative_to(ROOT)) for p in STANDALONE])
def test_only_the_mcp_path_reaches_the_server_and_underscores_are_refused(path: Path):
    """The settings tests/e2e/test_path_variants.py and test_header_hygiene.py rely on,
    named so that a change to them fails here with a clear message."""
    config = yaml.safe_load(path.read_text())
    hcm = connection_manager(config)
    assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    routes = [r for vhost in hcm["route_config"]["virtual_hosts"] for r in vhost["routes"]]
    to_server = [r["match"] for r in routes if r.get("route", {}).get("cluster") == "mcp_server"]
    mcp_paths = filter_settings(wasm_plugin_configs(config)[0]).get("mcp_paths", ["/mcp"])
    assert to_server == [{"path": p} for p in mcp_paths]
    # The last route answers everything else itself.
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["direct_response"]["status"] == 404
